// Package grouptext says in words what a group's system message records
// ("alice added bob, carol"). It is a leaf package, so that the server
// (the fallback text of its system messages, with user ids) and clients
// (with display names) say it the same way.
package grouptext

import (
	"fmt"
	"strings"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

// Describe returns the sentence for ch, naming users by name(user id).
func Describe(ch *starlingv1.GroupChange, name func(userID string) string) string {
	who := name(ch.GetActorId())
	targets := make([]string, len(ch.GetTargetIds()))
	for i, id := range ch.GetTargetIds() {
		targets[i] = name(id)
	}
	them := strings.Join(targets, ", ")
	switch ch.GetKind() {
	case starlingv1.GroupChange_KIND_INFO_UPDATED:
		return fmt.Sprintf("%s updated the group: %q", who, ch.GetInfo().GetName())
	case starlingv1.GroupChange_KIND_MEMBERS_ADDED:
		return fmt.Sprintf("%s added %s", who, them)
	case starlingv1.GroupChange_KIND_MEMBER_JOINED:
		return fmt.Sprintf("%s joined", who)
	case starlingv1.GroupChange_KIND_MEMBER_KICKED:
		return fmt.Sprintf("%s removed %s", who, them)
	case starlingv1.GroupChange_KIND_MEMBER_LEFT:
		return fmt.Sprintf("%s left", who)
	case starlingv1.GroupChange_KIND_ROLE_CHANGED:
		if ch.GetRole() == starlingv1.GroupRole_GROUP_ROLE_ADMIN {
			return fmt.Sprintf("%s made %s an admin", who, them)
		}
		return fmt.Sprintf("%s made %s a member", who, them)
	case starlingv1.GroupChange_KIND_OWNERSHIP_TRANSFERRED:
		return fmt.Sprintf("%s made %s the owner", who, them)
	case starlingv1.GroupChange_KIND_DISBANDED:
		return fmt.Sprintf("%s disbanded the group", who)
	case starlingv1.GroupChange_KIND_CREATED:
		return fmt.Sprintf("%s created the group %q", who, ch.GetInfo().GetName())
	}
	return "the group changed"
}
