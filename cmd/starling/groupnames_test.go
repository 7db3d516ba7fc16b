package main

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/chat"
	"github.com/starling-im/starling/server/servertest"
)

// createGroup runs `group create` and returns the group's id, from the
// one place plain output prints it.
func (u *user) createGroup(t *testing.T, name string, members ...string) string {
	t.Helper()
	out := u.ok(append([]string{"group", "create", name}, members...)...)
	m := regexp.MustCompile(`^created group #` + regexp.QuoteMeta(name) + ` \((g[a-z0-9]+)\) with \d+ members?\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("group create %s printed %q; want \"created group #%s (<id>) with <n> members\"", name, out, name)
	}
	return m[1]
}

// says runs a command that must succeed and print exactly want.
func (u *user) says(want string, args ...string) {
	u.t.Helper()
	if out := u.ok(args...); out != want {
		u.t.Fatalf("starling %s printed %q; want %q", strings.Join(args, " "), out, want)
	}
}

// refuses runs a command that must fail with exit 1 and print exactly the
// line want on stderr.
func (u *user) refuses(want string, args ...string) {
	u.t.Helper()
	out, errOut, code := u.run(args...)
	if code != 1 || out != "" || errOut != want+"\n" {
		u.t.Fatalf("starling %s: exit %d, stdout %q, stderr %q; want exit 1 and stderr %q", strings.Join(args, " "), code, out, errOut, want)
	}
}

// A group is named by its name, bare or as #name, or by its id, in every
// command that takes one; plain output names groups #name and users by
// username, never by id.
func TestGroupByNameOrID(t *testing.T) {
	srv := servertest.Start(t)
	alice, bob, carol := signup(t, srv, "alice"), signup(t, srv, "bob"), signup(t, srv, "carol")
	id := alice.createGroup(t, "friends", "bob")

	if out := alice.ok("group", "list"); strings.Join(strings.Fields(out), " ") != "#friends 2 members owner" || strings.Count(out, "\n") != 1 {
		t.Fatalf("group list printed %q; want one line \"#friends  2 members  owner\"", out)
	}
	if out := alice.ok("group", "list", "-v"); !strings.HasPrefix(out, "#friends ") || !strings.HasSuffix(out, "  ("+id+")\n") {
		t.Fatalf("group list -v printed %q; want the id at the end", out)
	}
	if lines := jsonLines(t, alice.ok("group", "list", "--json")); len(lines) != 1 || lines[0]["group_id"] != id || lines[0]["name"] != "friends" ||
		lines[0]["member_count"] != float64(2) || lines[0]["role"] != "owner" {
		t.Fatalf("group list --json printed %v", lines)
	}

	// gsend: the system message of the creation is #1.
	alice.says("sent to #friends #2\n", "gsend", "friends", "by", "bare", "name")
	alice.says("sent to #friends #3\n", "gsend", "#friends", "by hash name")
	alice.says("sent to #friends #4\n", "gsend", id, "by id")
	if lines := jsonLines(t, alice.ok("gsend", "friends", "--json", "json")); len(lines) != 1 || lines[0]["conversation_id"] != "grp:"+id || lines[0]["seq"] != float64(5) {
		t.Fatalf("gsend --json printed %v; want the conversation id and seq", lines)
	}
	// send takes a group too, when no user has the name.
	alice.says("sent to #friends #6\n", "send", "friends", "by send")
	alice.says("sent to @bob #1\n", "send", "bob", "hi")
	alice.says("sent to @bob #2\n", "send", "@bob", "hi again")
	if lines := jsonLines(t, alice.ok("send", "bob", "--json", "json")); len(lines) != 1 || !strings.HasPrefix(lines[0]["conversation_id"].(string), "c2c:") || lines[0]["seq"] != float64(3) {
		t.Fatalf("send --json printed %v; want the conversation id and seq", lines)
	}
	out := bob.ok("history", "#friends")
	for _, want := range []string{"[#friends #2] alice: by bare name\n", "[#friends #3] alice: by hash name\n", "[#friends #4] alice: by id\n", "[#friends #6] alice: by send\n"} {
		if !strings.Contains(out, want) {
			t.Fatalf("history #friends lacks %q:\n%s", want, out)
		}
	}
	if h1, h2 := bob.ok("history", "friends"), bob.ok("history", id); h1 != out || h2 != out {
		t.Fatalf("history by bare name %q and by id %q differ from by #name %q", h1, h2, out)
	}
	bob.says("#friends read up to #6\n", "read", "friends")

	// The group commands.
	alice.says("added to #friends: carol\n", "group", "add", "#friends", "carol")
	alice.says("bob is now an admin of #friends\n", "group", "role", "friends", "bob", "admin")
	carol.refuses("starling: kick bob from #friends: only the group's admins may do this", "group", "kick", "friends", "bob")
	bob.says("removed carol from #friends\n", "group", "kick", id, "carol")
	if out := bob.ok("group", "members", "#friends"); !strings.Contains(out, "alice\towner\n") || !strings.Contains(out, "bob\tadmin\n") || strings.Count(out, "\n") != 2 {
		t.Fatalf("group members #friends printed %q", out)
	}
	if out := bob.ok("group", "info", "friends"); !strings.HasPrefix(out, "group #friends ("+id+")\n") || !strings.Contains(out, "your role: admin\n") {
		t.Fatalf("group info friends printed %q", out)
	}
	if out := bob.ok("group", "show", "#friends"); !strings.HasPrefix(out, "group #friends ("+id+")\nowner: alice\n") {
		t.Fatalf("group show #friends printed %q", out)
	}
	bob.says("updated group #friends, now #pals\n", "group", "update", "friends", "--name", "pals", "--join", "open")
	bob.says("updated group #pals\n", "group", "update", "#pals", "--description", "old friends")
	carol.says("joined group #pals\n", "group", "join", id)
	carol.says("left group #pals\n", "group", "leave", "pals")
	alice.says("bob now owns #pals; you are an admin\n", "group", "transfer", "pals", "bob")
	bob.says("disbanded group #pals\n", "group", "disband", "#pals")
	// A disbanded group is no longer one of theirs; its id says why.
	alice.fails(1, "the group was disbanded", "gsend", id, "anyone?")
}

// A name two of the caller's groups share is refused with their ids; a
// name no group of theirs has is refused; a username that is also a group
// name is the user wherever a user may be meant.
func TestGroupNameAmbiguousUnknownOrUser(t *testing.T) {
	srv := servertest.Start(t)
	alice, bob, carol := signup(t, srv, "alice"), signup(t, srv, "bob"), signup(t, srv, "carol")
	first := alice.createGroup(t, "team", "bob")
	second := alice.createGroup(t, "team", "carol")

	for _, args := range [][]string{{"gsend", "team", "x"}, {"gsend", "#team", "x"}, {"send", "team", "x"}, {"group", "kick", "team", "bob"}, {"history", "#team"}, {"read", "team"}} {
		out, errOut, code := alice.run(args...)
		if code != 1 || out != "" || strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, `starling: 2 of your groups are named "team"; name one by its id: `) ||
			!strings.Contains(errOut, first+" (2 members, owner)") || !strings.Contains(errOut, second+" (2 members, owner)") {
			t.Fatalf("starling %s: exit %d, stdout %q, stderr %q; want exit 1 and one line listing both ids", strings.Join(args, " "), code, out, errOut)
		}
	}
	// The ids tell them apart; bob and carol each have one "team".
	alice.says("sent to #team #2\n", "gsend", first, "to bob's team")
	alice.says("sent to #team #2\n", "gsend", second, "to carol's team")
	if out := bob.ok("history", "team"); !strings.Contains(out, "alice: to bob's team\n") || strings.Contains(out, "carol's") {
		t.Fatalf("bob's history team printed %q", out)
	}
	carol.says("sent to #team #3\n", "gsend", "team", "mine")

	// Unknown: no user or group of theirs by that name, nor a group of
	// someone else's by its name or id.
	dave := signup(t, srv, "dave")
	secret := dave.createGroup(t, "secret")
	alice.refuses(`starling: no user or group of yours named "nosuch"`, "send", "nosuch", "x")
	alice.refuses(`starling: no user or group of yours named "secret"`, "history", "secret")
	alice.refuses(`starling: no group of yours named "nosuch" or with that id`, "gsend", "nosuch", "x")
	alice.refuses(`starling: no group of yours named "secret"`, "gsend", "#secret", "x")
	alice.refuses(`starling: no group of yours named "secret"`, "send", "#secret", "x")
	alice.refuses(`starling: no group of yours named "`+secret+`" or with that id`, "gsend", secret, "x")
	alice.refuses(`starling: no group of yours named "`+secret+`" or with that id`, "group", "members", secret)
	alice.refuses(`starling: no user named "nosuch"`, "send", "@nosuch", "x")

	// A group named like a user: send, read and history mean the user;
	// #bob, gsend and the group commands the group.
	alice.createGroup(t, "bob", "carol")
	alice.says("sent to @bob #1\n", "send", "bob", "to the user")
	alice.says("sent to #bob #2\n", "send", "#bob", "to the group")
	alice.says("sent to #bob #3\n", "gsend", "bob", "to the group again")
	if out := bob.ok("history", "alice"); !strings.Contains(out, "[@alice #1] alice: to the user\n") || strings.Contains(out, "to the group") {
		t.Fatalf("bob's history alice printed %q", out)
	}
	if out := alice.ok("history", "bob"); !strings.Contains(out, "[@bob #1] alice: to the user\n") || strings.Contains(out, "to the group") {
		t.Fatalf("alice's history bob printed %q; want the one-to-one conversation", out)
	}
	if out := carol.ok("history", "#bob"); !strings.Contains(out, "[#bob #2] alice: to the group\n") || !strings.Contains(out, "[#bob #3] alice: to the group again\n") {
		t.Fatalf("carol's history #bob printed %q", out)
	}
	alice.says("@bob read up to #1\n", "read", "bob")
	alice.says("#bob read up to #3\n", "read", "#bob")

	// A refused send names the user as typed, not by id.
	bob.ok("block", "alice")
	alice.refuses("starling: send to bob: a block between you and this user forbids this", "send", "bob", "x")
	bob.refuses("starling: send to alice: a block between you and this user forbids this", "send", "@alice", "x")
}

// Names are looked up in all the caller's groups, not only the first page
// of ListMyGroups: more groups share a name than one page holds, and the
// refusal counts them all.
func TestGroupNameLookupPages(t *testing.T) {
	srv := servertest.Start(t)
	alice := signup(t, srv, "alice")
	u, err := srv.Store().GetUserByUsername(t.Context(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	ctx := servertest.WithToken(t.Context(), srv.Login(t, servertest.User{ID: u.ID, Username: "alice"}, "api"))
	gs := starlingv1.NewGroupServiceClient(srv.Dial(t))
	n := chat.DefaultPageSize + 1
	for range n {
		if _, err := gs.CreateGroup(ctx, &starlingv1.CreateGroupRequest{Name: "crowd"}); err != nil {
			t.Fatal(err)
		}
	}
	_, errOut, code := alice.run("gsend", "crowd", "x")
	// The line lists the first ten ids, and says how many more there are.
	if want, more := fmt.Sprintf(`starling: %d of your groups are named "crowd"; name one by its id: `, n), fmt.Sprintf(", and %d more (see 'starling group list -v')\n", n-10); code != 1 ||
		!strings.HasPrefix(errOut, want) || !strings.HasSuffix(errOut, more) || strings.Count(errOut, " (1 member, owner)") != 10 {
		t.Fatalf("gsend crowd: exit %d, stderr %q; want exit 1 and %q, ten ids and %q", code, errOut, want, more)
	}
	last := alice.createGroup(t, "last")
	alice.says("sent to #last #2\n", "gsend", "last", "found")
	alice.says("sent to #last #3\n", "gsend", last, "found by id")
}
