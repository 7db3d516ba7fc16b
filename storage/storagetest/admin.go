package storagetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/starling-im/starling/storage"
)

var adminTests = []test{
	{"UpdateUser", testUpdateUser},
	{"DisableUser", testDisableUser},
	{"RevokeSessions", testRevokeSessions},
	{"PushTokens", testPushTokens},
	{"CreateSessions", testCreateSessions},
}

func adminUser(t *testing.T, s storage.Store, id, name string) {
	t.Helper()
	must(t, s.CreateUser(t.Context(), storage.User{ID: id, Username: name, DisplayName: name, CreatedAt: time.Now()}), "create user "+id)
}

func testUpdateUser(t *testing.T, f Factory) {
	s, ctx := newStore(t, f), t.Context()
	adminUser(t, s, "u1", "alice")
	adminUser(t, s, "u2", "bob")
	must(t, s.UpdateUser(ctx, "u1", "alice2", "Alice Two"), "update")
	u, err := s.GetUser(ctx, "u1")
	must(t, err, "get")
	if u.Username != "alice2" || u.DisplayName != "Alice Two" {
		t.Fatalf("after update: %+v", u)
	}
	if err := s.UpdateUser(ctx, "u1", "bob", "x"); !errors.Is(err, storage.ErrAlreadyExists) {
		t.Fatalf("taking bob's username: %v, want ErrAlreadyExists", err)
	}
	if err := s.UpdateUser(ctx, "nobody", "carol", "x"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("update of a missing user: %v, want ErrNotFound", err)
	}
	if u, _ := s.GetUser(ctx, "u1"); u.Username != "alice2" {
		t.Fatalf("a refused update changed the user: %+v", u)
	}
}

func testDisableUser(t *testing.T, f Factory) {
	s, ctx := newStore(t, f), t.Context()
	adminUser(t, s, "u1", "alice")
	check := func(want bool) {
		t.Helper()
		got, err := s.UserDisabled(ctx, "u1")
		must(t, err, "disabled?")
		if got != want {
			t.Fatalf("disabled = %v, want %v", got, want)
		}
	}
	check(false)
	must(t, s.SetUserDisabled(ctx, "u1", true), "disable")
	must(t, s.SetUserDisabled(ctx, "u1", true), "disable twice")
	check(true)
	must(t, s.SetUserDisabled(ctx, "u1", false), "enable")
	must(t, s.SetUserDisabled(ctx, "u1", false), "enable twice")
	check(false)
	for _, d := range []bool{true, false} {
		if err := s.SetUserDisabled(ctx, "nobody", d); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("disable=%v of a missing user: %v, want ErrNotFound", d, err)
		}
	}
	if _, err := s.UserDisabled(ctx, "nobody"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("missing user disabled? %v, want ErrNotFound", err)
	}
}

func testRevokeSessions(t *testing.T, f Factory) {
	s, ctx := newStore(t, f), t.Context()
	adminUser(t, s, "u1", "alice")
	adminUser(t, s, "u2", "bob")
	now := time.Now()
	for _, sess := range []storage.Session{
		{ID: "s1", UserID: "u1", DeviceID: "phone"},
		{ID: "s2", UserID: "u1", DeviceID: "phone"},
		{ID: "s3", UserID: "u1", DeviceID: "laptop"},
		{ID: "s4", UserID: "u2", DeviceID: "phone"},
	} {
		sess.CreatedAt, sess.ExpiresAt = now, now.Add(time.Hour)
		must(t, s.CreateSession(ctx, sess), "create session")
	}
	ids := func(ss []storage.Session) []string {
		var out []string
		for _, x := range ss {
			out = append(out, x.ID)
			if !x.Revoked {
				t.Fatalf("returned session %s not revoked", x.ID)
			}
		}
		slices.Sort(out)
		return out
	}
	got, err := s.RevokeSessions(ctx, "u1", "phone")
	must(t, err, "revoke phone")
	if g := ids(got); !slices.Equal(g, []string{"s1", "s2"}) {
		t.Fatalf("revoked %v, want s1 s2", g)
	}
	got, err = s.RevokeSessions(ctx, "u1", "")
	must(t, err, "revoke all")
	if g := ids(got); !slices.Equal(g, []string{"s3"}) {
		t.Fatalf("revoked %v, want s3 (s1, s2 were revoked already)", g)
	}
	for id, want := range map[string]bool{"s1": true, "s2": true, "s3": true, "s4": false} {
		sess, err := s.GetSession(ctx, id)
		must(t, err, "get session")
		if sess.Revoked != want {
			t.Fatalf("session %s revoked = %v, want %v", id, sess.Revoked, want)
		}
	}
	if got, err := s.RevokeSessions(ctx, "nobody", ""); err != nil || len(got) != 0 {
		t.Fatalf("revoke of a missing user: %v, %v", got, err)
	}
}

func testPushTokens(t *testing.T, f Factory) {
	s, ctx := newStore(t, f), t.Context()
	adminUser(t, s, "u1", "alice")
	now := time.Now()
	must(t, s.PutPushToken(ctx, storage.PushToken{UserID: "u1", DeviceID: "phone", Platform: "apns", Token: "a1", UpdatedAt: now}), "put")
	must(t, s.PutPushToken(ctx, storage.PushToken{UserID: "u1", DeviceID: "tablet", Platform: "fcm", Token: "f1", UpdatedAt: now}), "put")
	must(t, s.PutPushToken(ctx, storage.PushToken{UserID: "u1", DeviceID: "phone", Platform: "apns", Token: "a2", UpdatedAt: now}), "replace")
	got, err := s.ListPushTokens(ctx, "u1")
	must(t, err, "list")
	if len(got) != 2 || got[0].DeviceID != "phone" || got[0].Token != "a2" || got[1].Platform != "fcm" || !sameTime(got[1].UpdatedAt, now) {
		t.Fatalf("tokens = %+v", got)
	}
	must(t, s.DeletePushToken(ctx, "u1", "phone"), "delete")
	must(t, s.DeletePushToken(ctx, "u1", "phone"), "delete twice")
	if got, _ := s.ListPushTokens(ctx, "u1"); len(got) != 1 || got[0].DeviceID != "tablet" {
		t.Fatalf("after delete: %+v", got)
	}
	if err := s.PutPushToken(ctx, storage.PushToken{UserID: "nobody", DeviceID: "d", Platform: "fcm", Token: "t", UpdatedAt: now}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("token of a missing user: %v, want ErrNotFound", err)
	}
}

func testCreateSessions(t *testing.T, f Factory) {
	s, ctx := newStore(t, f), t.Context()
	adminUser(t, s, "u1", "alice")
	now := time.Now()
	batch := []storage.Session{
		{ID: "s1", UserID: "u1", DeviceID: "a", CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
		{ID: "s2", UserID: "u1", DeviceID: "b", CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
	}
	must(t, s.CreateSessions(ctx, batch), "create sessions")
	for _, want := range batch {
		got, err := s.GetSession(ctx, want.ID)
		must(t, err, "get session")
		if got.DeviceID != want.DeviceID || got.Revoked || !sameTime(got.ExpiresAt, want.ExpiresAt) {
			t.Fatalf("session %+v, want %+v", got, want)
		}
	}
	// All or none: a taken id or a missing user stores nothing.
	for name, tc := range map[string]struct {
		bad  storage.Session
		want error
	}{
		"taken id":     {storage.Session{ID: "s1", UserID: "u1", DeviceID: "c"}, storage.ErrAlreadyExists},
		"missing user": {storage.Session{ID: "s9", UserID: "nobody", DeviceID: "c"}, storage.ErrNotFound},
	} {
		ok := storage.Session{ID: "s3-" + tc.bad.ID, UserID: "u1", DeviceID: "d", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		tc.bad.CreatedAt, tc.bad.ExpiresAt = now, now.Add(time.Hour)
		if err := s.CreateSessions(ctx, []storage.Session{ok, tc.bad}); !errors.Is(err, tc.want) {
			t.Fatalf("%s: %v, want %v", name, err, tc.want)
		}
		if _, err := s.GetSession(ctx, ok.ID); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("%s: the good session of a failed batch was stored: %v", name, err)
		}
	}
}
