package storagetest

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/starling-im/starling/storage"
)

var userTests = []test{
	{"CreateAndGet", testCreateAndGetUser},
	{"DuplicateID", testDuplicateUserID},
	{"DuplicateUsername", testDuplicateUsername},
	{"NotFound", testUserNotFound},
}

func testCreateAndGetUser(t *testing.T, f Factory) {
	s, ctx := newStore(t, f), t.Context()
	want := storage.User{
		ID:           "u1",
		Username:     "alice",
		DisplayName:  "Alice Ämmä 🐦",
		PasswordHash: []byte{0, 1, 2, 0xff, 0xfe},
		CreatedAt:    time.Date(2024, 2, 29, 23, 59, 58, 123_456_789, time.FixedZone("X", -7*3600)),
	}
	must(t, s.CreateUser(ctx, want), "create user")

	check := func(got storage.User, how string) {
		t.Helper()
		if got.ID != want.ID || got.Username != want.Username || got.DisplayName != want.DisplayName ||
			!bytes.Equal(got.PasswordHash, want.PasswordHash) || !sameTime(got.CreatedAt, want.CreatedAt) {
			t.Fatalf("%s = %+v, want %+v", how, got, want)
		}
	}
	got, err := s.GetUser(ctx, "u1")
	must(t, err, "get user")
	check(got, "GetUser")
	got, err = s.GetUserByUsername(ctx, "alice")
	must(t, err, "get user by username")
	check(got, "GetUserByUsername")

	// A second user does not disturb the first.
	must(t, s.CreateUser(ctx, storage.User{ID: "u2", Username: "bob", CreatedAt: time.Now()}), "create second user")
	got, err = s.GetUserByUsername(ctx, "bob")
	must(t, err, "get second user")
	if got.ID != "u2" {
		t.Fatalf("GetUserByUsername(bob).ID = %q, want u2", got.ID)
	}
	got, err = s.GetUser(ctx, "u1")
	must(t, err, "get user again")
	check(got, "GetUser after another CreateUser")
}

func testDuplicateUserID(t *testing.T, f Factory) {
	s, ctx := newStore(t, f), t.Context()
	must(t, s.CreateUser(ctx, storage.User{ID: "u1", Username: "alice", CreatedAt: time.Now()}), "create user")
	err := s.CreateUser(ctx, storage.User{ID: "u1", Username: "other", CreatedAt: time.Now()})
	wantErr(t, err, storage.ErrAlreadyExists, "create user with a taken id")
	_, err = s.GetUserByUsername(ctx, "other")
	wantErr(t, err, storage.ErrNotFound, "username of the refused user")
	got, err := s.GetUser(ctx, "u1")
	must(t, err, "get user")
	if got.Username != "alice" {
		t.Fatalf("refused CreateUser changed the user: username %q, want alice", got.Username)
	}
}

func testDuplicateUsername(t *testing.T, f Factory) {
	s, ctx := newStore(t, f), t.Context()
	must(t, s.CreateUser(ctx, storage.User{ID: "u1", Username: "alice", CreatedAt: time.Now()}), "create user")
	err := s.CreateUser(ctx, storage.User{ID: "u2", Username: "alice", CreatedAt: time.Now()})
	wantErr(t, err, storage.ErrAlreadyExists, "create user with a taken username")
	_, err = s.GetUser(ctx, "u2")
	wantErr(t, err, storage.ErrNotFound, "the refused user")
	got, err := s.GetUserByUsername(ctx, "alice")
	must(t, err, "get user by username")
	if got.ID != "u1" {
		t.Fatalf("GetUserByUsername(alice).ID = %q, want u1", got.ID)
	}
}

func testUserNotFound(t *testing.T, f Factory) {
	s, ctx := newStore(t, f), t.Context()
	_, err := s.GetUser(ctx, "nobody")
	wantErr(t, err, storage.ErrNotFound, "GetUser of an unknown id")
	_, err = s.GetUserByUsername(ctx, "nobody")
	wantErr(t, err, storage.ErrNotFound, "GetUserByUsername of an unknown name")
}

var sessionTests = []test{
	{"CreateGetRevoke", testSessionLifecycle},
	{"DuplicateID", testDuplicateSession},
	{"NotFound", testSessionNotFound},
	{"DeleteExpiredAndRevoked", testDeleteSessions},
}

func testSessionLifecycle(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	s, ctx := fx.s, t.Context()
	fx.users("alice")
	created := time.Now()
	want := storage.Session{ID: "s1", UserID: "alice", DeviceID: "phone", CreatedAt: created, ExpiresAt: created.Add(30 * 24 * time.Hour)}
	must(t, s.CreateSession(ctx, want), "create session")
	must(t, s.CreateSession(ctx, storage.Session{ID: "s2", UserID: "alice", DeviceID: "laptop",
		CreatedAt: created, ExpiresAt: created.Add(time.Hour)}), "create second session")

	check := func(id string, revoked bool) storage.Session {
		t.Helper()
		got, err := s.GetSession(ctx, id)
		must(t, err, "get session "+id)
		if got.Revoked != revoked {
			t.Fatalf("session %s: Revoked = %v, want %v", id, got.Revoked, revoked)
		}
		return got
	}
	got := check("s1", false)
	if got.ID != want.ID || got.UserID != want.UserID || got.DeviceID != want.DeviceID ||
		!sameTime(got.CreatedAt, want.CreatedAt) || !sameTime(got.ExpiresAt, want.ExpiresAt) {
		t.Fatalf("GetSession = %+v, want %+v", got, want)
	}

	must(t, s.RevokeSession(ctx, "s1"), "revoke session")
	check("s1", true)
	check("s2", false) // revoking one device's session leaves the others alone
	must(t, s.RevokeSession(ctx, "s1"), "revoke session twice")
	check("s1", true)
}

func testDuplicateSession(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	s, ctx := fx.s, t.Context()
	fx.users("alice")
	must(t, s.CreateSession(ctx, storage.Session{ID: "s1", UserID: "alice", DeviceID: "phone",
		CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}), "create session")
	err := s.CreateSession(ctx, storage.Session{ID: "s1", UserID: "alice", DeviceID: "laptop",
		CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)})
	wantErr(t, err, storage.ErrAlreadyExists, "create session with a taken id")
	got, err := s.GetSession(ctx, "s1")
	must(t, err, "get session")
	if got.DeviceID != "phone" {
		t.Fatalf("refused CreateSession changed the session: device %q, want phone", got.DeviceID)
	}
}

func testSessionNotFound(t *testing.T, f Factory) {
	s, ctx := newStore(t, f), t.Context()
	_, err := s.GetSession(ctx, "nope")
	wantErr(t, err, storage.ErrNotFound, "GetSession of an unknown id")
	wantErr(t, s.RevokeSession(ctx, "nope"), storage.ErrNotFound, "RevokeSession of an unknown id")
}

func testDeleteSessions(t *testing.T, f Factory) {
	fx := newFixture(t, f)
	s, ctx := fx.s, t.Context()
	fx.users("alice", "bob")
	now := time.Now().Truncate(time.Millisecond)
	create := func(id string, expires time.Time, revoked bool) {
		t.Helper()
		must(t, s.CreateSession(ctx, storage.Session{ID: id, UserID: "alice", DeviceID: "d-" + id,
			CreatedAt: now.Add(-2 * time.Hour), ExpiresAt: expires}), "create session "+id)
		if revoked {
			must(t, s.RevokeSession(ctx, id), "revoke session "+id)
		}
	}
	var live, doomed []string
	for i := range 3 {
		id := fmt.Sprintf("live%d", i)
		create(id, now.Add(time.Hour), false)
		live = append(live, id)
	}
	create("boundary", now, false) // expires exactly at the cut: kept (ExpiresAt < expiredBefore only)
	live = append(live, "boundary")
	for i := range 5 {
		id := fmt.Sprintf("expired%d", i)
		create(id, now.Add(-time.Duration(i+1)*time.Minute), false)
		doomed = append(doomed, id)
	}
	for i := range 4 {
		id := fmt.Sprintf("revoked%d", i)
		create(id, now.Add(time.Hour), true)
		doomed = append(doomed, id)
	}
	create("both", now.Add(-time.Hour), true) // expired and revoked: deleted once
	doomed = append(doomed, "both")

	_, err := s.DeleteSessions(ctx, now, 0)
	if err == nil {
		t.Fatal("DeleteSessions with limit 0 succeeded")
	}

	// Bounded batches: 10 to delete, 3 at a time.
	var total, calls int
	for {
		n, err := s.DeleteSessions(ctx, now, 3)
		must(t, err, "delete sessions")
		if n > 3 || n < 0 {
			t.Fatalf("DeleteSessions(limit 3) deleted %d", n)
		}
		total += n
		calls++
		if n < 3 {
			break
		}
		if calls > 10 {
			t.Fatal("DeleteSessions keeps deleting")
		}
	}
	if total != len(doomed) || calls != 4 {
		t.Fatalf("deleted %d sessions in %d calls, want %d in 4 (3+3+3+1)", total, calls, len(doomed))
	}
	for _, id := range doomed {
		_, err := s.GetSession(ctx, id)
		wantErr(t, err, storage.ErrNotFound, "GetSession of deleted session "+id)
	}
	for _, id := range live {
		got, err := s.GetSession(ctx, id)
		must(t, err, "live session "+id+" kept")
		if got.Revoked {
			t.Fatalf("live session %s revoked", id)
		}
	}
	n, err := s.DeleteSessions(ctx, now, 100)
	must(t, err, "delete sessions again")
	if n != 0 {
		t.Fatalf("second pass deleted %d, want 0", n)
	}
	// The live sessions still work as sessions: revoke one, it goes next.
	must(t, s.RevokeSession(ctx, "live0"), "revoke live0")
	n, err = s.DeleteSessions(ctx, now, 100)
	must(t, err, "delete the newly revoked session")
	if n != 1 {
		t.Fatalf("deleted %d after one revocation, want 1", n)
	}
	// A later cut collects the boundary session and the others as they expire.
	n, err = s.DeleteSessions(ctx, now.Add(2*time.Hour), 100)
	must(t, err, "delete after everything expired")
	if n != 3 {
		t.Fatalf("deleted %d once all expired, want 3", n)
	}
}
