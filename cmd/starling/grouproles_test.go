package main

import (
	"encoding/json"
	"strings"
	"testing"

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
	if out := dave.ok("groups", "join", g.GroupID); !strings.Contains(out, `"renamed"`) {
		t.Fatalf("groups join: %q", out)
	}
	if out := dave.ok("groups", "list"); !strings.Contains(out, g.GroupID) || !strings.Contains(out, "3 members") || !strings.Contains(out, "member") {
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
