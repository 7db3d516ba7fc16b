package main

import (
	"encoding/json"
	"strings"
	"testing"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/servertest"
)

func TestGroupRoleCommands(t *testing.T) {
	srv := servertest.Start(t)
	alice, bob, carol, dave := signup(t, srv, "alice"), signup(t, srv, "bob"), signup(t, srv, "carol"), signup(t, srv, "dave")
	var g struct {
		GroupID string `json:"group_id"`
	}
	if err := json.Unmarshal([]byte(alice.ok("groups", "create", "team", "bob", "carol", "--description", "our team", "--admins-add", "--json")), &g); err != nil || g.GroupID == "" {
		t.Fatalf("groups create: %+v %v", g, err)
	}
	bob.fails(1, "only the group's admins", "groups", "add", g.GroupID, "dave")
	bob.fails(1, "only the group's owner", "groups", "role", g.GroupID, "carol", "admin")
	if out := alice.ok("groups", "role", g.GroupID, "bob", "admin"); !strings.Contains(out, "bob is now an admin") {
		t.Fatalf("groups role: %q", out)
	}
	if out := bob.ok("groups", "info", g.GroupID); !strings.Contains(out, "your role: admin") || !strings.Contains(out, "description: our team") || !strings.Contains(out, "who adds: admins") {
		t.Fatalf("groups info: %q", out)
	}
	carol.fails(1, "only the group's admins", "groups", "kick", g.GroupID, "bob")
	bob.fails(1, "nobody can kick the group's owner", "groups", "kick", g.GroupID, "alice")
	if out := bob.ok("groups", "kick", g.GroupID, "carol"); !strings.Contains(out, "removed carol") {
		t.Fatalf("groups kick: %q", out)
	}
	if out := bob.ok("groups", "members", g.GroupID); !strings.Contains(out, "alice\towner") || !strings.Contains(out, "bob\tadmin") || strings.Contains(out, "carol") {
		t.Fatalf("groups members: %q", out)
	}
	dave.fails(1, "invite only", "groups", "join", g.GroupID)
	bob.ok("groups", "update", g.GroupID, "--name", "renamed", "--join", "open")
	if out := dave.ok("groups", "join", g.GroupID); !strings.Contains(out, "joined group #renamed") {
		t.Fatalf("groups join: %q", out)
	}
	if out := dave.ok("groups", "list", "-v"); !strings.Contains(out, g.GroupID) || !strings.Contains(out, "3 members") || !strings.Contains(out, "member") {
		t.Fatalf("groups list: %q", out)
	}
	alice.fails(1, "transfer ownership", "groups", "leave", g.GroupID)
	alice.ok("groups", "transfer", g.GroupID, "bob")
	alice.ok("groups", "leave", g.GroupID)
	out := bob.ok("history", g.GroupID)
	for _, want := range []string{"* alice made bob an admin", "* bob removed carol", `* bob updated the group: "renamed"`, "* dave joined", "* alice made bob the owner", "* alice left"} {
		if !strings.Contains(out, want) {
			t.Fatalf("history lacks %q:\n%s", want, out)
		}
	}
	bob.ok("groups", "disband", g.GroupID)
	dave.fails(1, "disbanded", "gsend", g.GroupID, "anyone?")
	bob.fails(2, "the role is admin or member", "groups", "role", g.GroupID, "dave", "king")
	bob.fails(2, "--join is open or invite", "groups", "update", g.GroupID, "--join", "maybe")
}

// listen prints the group changes that start or end the user's membership
// (group events), in the style of the other events. Alice acts through the
// API, not the CLI: a CLI run sets the environment, which bob's listen may
// not have read yet.
func TestListenGroupEvents(t *testing.T) {
	srv := servertest.Start(t)
	bob := signup(t, srv, "bob")
	aliceU := srv.NewUser(t, "alice")
	ctx := servertest.WithToken(t.Context(), srv.Login(t, aliceU, "phone"))
	bobU, err := srv.Store().GetUserByUsername(t.Context(), "bob")
	if err != nil {
		t.Fatal(err)
	}
	gs := starlingv1.NewGroupServiceClient(srv.Dial(t))
	l := bob.listen(t, "--json")
	g, err := gs.CreateGroup(ctx, &starlingv1.CreateGroupRequest{Name: "team", MemberIds: []string{bobU.ID}})
	if err != nil {
		t.Fatal(err)
	}
	gid := g.GetGroup().GetGroupId()
	if _, err := gs.KickMember(ctx, &starlingv1.KickMemberRequest{GroupId: gid, UserId: bobU.ID}); err != nil {
		t.Fatal(err)
	}
	var evs []map[string]any
	for _, line := range l.waitLines(t, 4) { // two events, two system messages
		if line["event"] == "group" {
			evs = append(evs, line)
		}
	}
	l.stop(t)
	if len(evs) != 2 || evs[0]["kind"] != "KIND_CREATED" || evs[0]["group"] != "team" || evs[0]["actor"] != "alice" || evs[0]["group_seq"] != float64(1) ||
		evs[1]["kind"] != "KIND_MEMBER_KICKED" || evs[1]["text"] != "alice removed bob" || evs[1]["group_id"] != gid {
		t.Fatalf("listen printed group events %v", evs)
	}
	if _, err := gs.DisbandGroup(ctx, &starlingv1.DisbandGroupRequest{GroupId: gid}); err != nil {
		t.Fatal(err)
	}
	g, err = gs.CreateGroup(ctx, &starlingv1.CreateGroupRequest{Name: "team", MemberIds: []string{bobU.ID}})
	if err != nil {
		t.Fatal(err)
	}
	l = bob.listen(t)
	out := l.waitText(t, "alice created the group")
	l.stop(t)
	if !strings.Contains(out, `[event #3] alice created the group "team" (#team #1)`) {
		t.Fatalf("listen printed %q", out)
	}
}
