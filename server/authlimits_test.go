package server_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server"
	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/server/servertest"
	"github.com/starling-im/starling/storage"
)

func wantStatus(t *testing.T, err error, code codes.Code, e *apierr.Error, what string) {
	t.Helper()
	if st := status.Convert(err); st.Code() != code || (e != nil && st.Message() != e.Message) {
		t.Fatalf("%s: %v; want %v %v", what, err, code, e)
	}
}

// Over gRPC: password guessing for one username backs off, a flood of
// logins from one address is cut off, registrations are limited per
// address. (server/auth has the unit tests, with other addresses and a
// clock.)
func TestLoginAndRegisterLimits(t *testing.T) {
	srv := servertest.Start(t, servertest.WithConfig(func(c *server.Config) {
		c.AuthLimits = server.DefaultAuthLimits()
		c.AuthLimits.LoginRate, c.AuthLimits.LoginBurst = 0.001, 40
		c.AuthLimits.RegisterRate, c.AuthLimits.RegisterBurst = 0.001, 3
		c.AuthLimits.LoginBackoff, c.AuthLimits.MaxLoginBackoff = time.Hour, time.Hour
	}))
	authc := starlingv1.NewAuthServiceClient(srv.Dial(t))
	ctx := t.Context()
	alice, bob := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	login := func(u, pw string) error {
		_, err := authc.Login(ctx, &starlingv1.LoginRequest{Username: u, Password: pw, DeviceId: "d"})
		return err
	}

	// 30 wrong passwords for alice: 5 checked, then refused.
	for i := range 30 {
		if err := login(alice.Username, "wrong password"); i < 5 {
			wantStatus(t, err, codes.Unauthenticated, apierr.BadCredentials, fmt.Sprintf("guess %d", i+1))
		} else {
			wantStatus(t, err, codes.ResourceExhausted, apierr.LoginBackoff, fmt.Sprintf("guess %d", i+1))
		}
	}
	wantStatus(t, login(alice.Username, servertest.Password), codes.ResourceExhausted, apierr.LoginBackoff, "alice's own password during the backoff")
	if err := login(bob.Username, servertest.Password); err != nil {
		t.Fatalf("bob while alice is backed off: %v", err)
	}
	// 32 logins used of the address's 40.
	for i := range 8 {
		if err := login(bob.Username, servertest.Password); err != nil {
			t.Fatalf("login %d of the burst: %v", 33+i, err)
		}
	}
	for range 10 {
		wantStatus(t, login(bob.Username, servertest.Password), codes.ResourceExhausted, apierr.LoginRateLimited, "past the burst")
	}

	// Registrations: 2 of the 3 were alice and bob.
	if _, err := authc.Register(ctx, &starlingv1.RegisterRequest{Username: "carol", Password: servertest.Password}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		_, err := authc.Register(ctx, &starlingv1.RegisterRequest{Username: fmt.Sprintf("flood%d", i), Password: servertest.Password})
		wantStatus(t, err, codes.ResourceExhausted, apierr.RegisterRateLimited, "registration flood")
	}
}

// The node deletes expired and revoked sessions in the background; live
// ones stay, and the tokens of deleted revoked sessions stay refused.
func TestSessionCollection(t *testing.T) {
	for _, b := range servertest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			srv := servertest.Start(t, servertest.WithStore(b.New(t)), servertest.WithConfig(func(c *server.Config) {
				c.SessionGCInterval, c.SessionGCBatch = 20*time.Millisecond, 2
			}))
			cc := srv.Dial(t)
			alice := srv.NewUser(t, "alice")
			var live, revoked []string
			for i := range 5 {
				tok := srv.Login(t, alice, fmt.Sprintf("dev%d", i))
				if i < 3 {
					if _, err := starlingv1.NewAuthServiceClient(cc).Logout(servertest.WithToken(t.Context(), tok), &starlingv1.LogoutRequest{}); err != nil {
						t.Fatal(err)
					}
					revoked = append(revoked, tok)
				} else {
					live = append(live, tok)
				}
			}
			// The collector deletes the revoked sessions (every 20 ms, 2 per
			// transaction) and keeps the live ones.
			deadline := time.Now().Add(20 * time.Second)
			for _, tok := range revoked {
				for {
					_, err := srv.Store().GetSession(t.Context(), sessionID(t, tok))
					if errors.Is(err, storage.ErrNotFound) {
						break
					}
					if err != nil || time.Now().After(deadline) {
						t.Fatalf("revoked session not collected: %v", err)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			for _, tok := range live {
				if s, err := srv.Store().GetSession(t.Context(), sessionID(t, tok)); err != nil || s.Revoked {
					t.Fatalf("live session: %+v, %v", s, err)
				}
			}
			chatc := starlingv1.NewChatServiceClient(cc)
			for _, tok := range live {
				if _, err := chatc.ListConversations(servertest.WithToken(t.Context(), tok), &starlingv1.ListConversationsRequest{}); err != nil {
					t.Fatalf("live token after collection: %v", err)
				}
			}
			for _, tok := range revoked {
				_, err := chatc.ListConversations(servertest.WithToken(t.Context(), tok), &starlingv1.ListConversationsRequest{})
				wantStatus(t, err, codes.Unauthenticated, nil, "revoked token after collection")
			}
		})
	}
}

// sessionID reads the session id (sid) out of a token, unverified.
func sessionID(t *testing.T, token string) string {
	t.Helper()
	var c struct {
		Sid string `json:"sid"`
		jwt.RegisteredClaims
	}
	if _, _, err := jwt.NewParser().ParseUnverified(token, &c); err != nil || c.Sid == "" {
		t.Fatalf("token without a session id: %v", err)
	}
	return c.Sid
}
