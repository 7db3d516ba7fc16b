package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/starling-im/starling/server"
	"github.com/starling-im/starling/server/admin"
	"github.com/starling-im/starling/server/servertest"
)

func TestAdminCommands(t *testing.T) {
	key := strings.Repeat("k", 40)
	keys, err := admin.NewKeys(admin.Key{Name: "cli", SHA256: admin.Hash(key), Scopes: []string{admin.ScopeAll}})
	if err != nil {
		t.Fatal(err)
	}
	srv := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.AdminKeys = keys }))
	ops := newUser(t, srv)
	ops.fails(2, "STARLING_ADMIN_KEY", "admin", "presence", "x")
	t.Setenv("STARLING_ADMIN_KEY", "wrong")
	ops.fails(1, "API key", "admin", "presence", "x")
	ops.fails(2, "--cert and --key go together", "admin", "--cert", "c.pem", "presence", "x")
	ops.fails(2, "--cert/--key", "admin", "--cert", "missing.pem", "--key", "missing.pem", "presence", "x")
	t.Setenv("STARLING_ADMIN_KEY", key)
	ops.fails(2, "unknown command", "admin", "nope")

	var up struct {
		User struct {
			UserID string `json:"user_id"`
		} `json:"user"`
		Created bool `json:"created"`
	}
	if err := json.Unmarshal([]byte(ops.ok("admin", "users", "upsert", "acct-1", "carol", "--display-name", "Carol")), &up); err != nil || up.User.UserID != "x.acct-1" || !up.Created {
		t.Fatalf("upsert: %+v %v", up, err)
	}
	var tok struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(ops.ok("admin", "token", "x.acct-1", "phone")), &tok); err != nil || tok.Token == "" {
		t.Fatalf("token: %+v %v", tok, err)
	}
	// The minted token works for the user's own commands.
	st := srv.OpenStream(t, tok.Token)
	if st.Welcome.GetUserId() != "x.acct-1" {
		t.Fatalf("welcome %v", st.Welcome)
	}
	if out := ops.ok("admin", "send", "--to", "x.acct-1", "--id", "n1", "hello", "carol"); !strings.Contains(out, `"sender_id":"system"`) {
		t.Fatalf("send: %s", out)
	}
	if out := ops.ok("admin", "broadcast", "--id", "b1", "--to", "x.acct-1,nobody", "maintenance"); !strings.Contains(out, `"code":5`) {
		t.Fatalf("broadcast: %s", out)
	}
	if out := ops.ok("admin", "presence", "x.acct-1"); !strings.Contains(out, `"online":true`) {
		t.Fatalf("presence: %s", out)
	}
	ops.ok("admin", "users", "upsert", "acct-2", "dave")
	var g struct {
		Group struct {
			GroupID     string `json:"group_id"`
			MemberCount int    `json:"member_count"`
		} `json:"group"`
	}
	if err := json.Unmarshal([]byte(ops.ok("admin", "groups", "create", "x.acct-1", "team", "x.acct-2:admin")), &g); err != nil || g.Group.MemberCount != 2 {
		t.Fatalf("groups create: %+v %v", g, err)
	}
	if out := ops.ok("admin", "groups", "set", g.Group.GroupID, "x.acct-2:member"); !strings.Contains(out, `"role_changed_user_ids":["x.acct-2"]`) {
		t.Fatalf("groups set: %s", out)
	}
	ops.fails(2, "member, admin or owner", "admin", "groups", "set", g.Group.GroupID, "x.acct-2:boss")
	if out := ops.ok("admin", "revoke", "x.acct-1"); !strings.Contains(out, `"revoked_tokens":1`) {
		t.Fatalf("revoke: %s", out)
	}
	ops.ok("admin", "users", "disable", "x.acct-1")
	ops.fails(1, "disabled", "admin", "token", "x.acct-1", "phone")
}
