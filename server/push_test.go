package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server"
	"github.com/starling-im/starling/server/push"
	"github.com/starling-im/starling/server/servertest"
	"github.com/starling-im/starling/storage"
)

var pushSecret = []byte("push-secret-of-at-least-16-bytes")

// TestOfflinePush: messages to a user with no device online reach the
// push webhook, signed, coalesced into one call with a count and the
// user's push tokens; a user with a device online gets none.
func TestOfflinePush(t *testing.T) {
	for _, b := range servertest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			hookURL, got := signedWebhook[push.Notification](t, nil)
			srv := servertest.Start(t, servertest.WithStore(b.New(t)), servertest.WithConfig(func(c *server.Config) {
				c.PushWebhook = &push.WebhookConfig{URL: hookURL, Secret: pushSecret, Backoff: 10 * time.Millisecond}
				c.PushWindow = time.Second
				c.PushPreview = true
			}))
			alice, bob, carol := srv.NewUser(t, "alice"), srv.NewUser(t, "bob"), srv.NewUser(t, "carol")
			// Bob registers a push token, then goes offline.
			bobTok := srv.Login(t, bob, "phone")
			if _, err := starlingv1.NewPushServiceClient(srv.Dial(t)).RegisterPushToken(servertest.WithToken(t.Context(), bobTok), &starlingv1.RegisterPushTokenRequest{Platform: "fcm", Token: "fcm-token-1"}); err != nil {
				t.Fatal(err)
			}
			carolDev := connect(t, srv, carol, "phone")
			a := connect(t, srv, alice, "phone")
			// Carol is online: no push for her. Bob is not: one push for
			// three messages.
			expectAck(t, a, a.Text(t, carol.ID, "", "c1", "hi carol"))
			pushed(t, carolDev, 1)
			// Sent back to back, then their acks read: all three within
			// the window, even on a loaded machine.
			var refs []uint64
			for i, text := range []string{"one", "two", "three"} {
				refs = append(refs, a.Text(t, bob.ID, "", "b"+string(rune('1'+i)), text))
			}
			for _, ref := range refs {
				expectAck(t, a, ref)
			}
			var n push.Notification
			select {
			case n = <-got:
			case <-time.After(10 * time.Second):
				t.Fatal("no push for the offline user")
			}
			if n.Type != "message.offline" || n.Recipient != bob.ID || n.SenderID != alice.ID || n.Count != 3 || n.Seq != 3 || n.Preview != "three" ||
				len(n.Tokens) != 1 || n.Tokens[0].Token != "fcm-token-1" || n.Tokens[0].Platform != "fcm" {
				t.Fatalf("notification %+v", n)
			}
			// Nothing was pushed for carol, who was online, or erin, who
			// muted: the next push is dave's, sent after everything else.
			// Erin muted her conversation with alice (SetMute, as a user
			// does): no push for her either.
			erin, dave := srv.NewUser(t, "erin"), srv.NewUser(t, "dave")
			erinChat := starlingv1.NewChatServiceClient(srv.Dial(t))
			if _, err := erinChat.SetMute(servertest.WithToken(t.Context(), srv.Login(t, erin, "phone")), &starlingv1.SetMuteRequest{
				ConversationId: storage.C2CConversationID(alice.ID, erin.ID), Forever: true,
			}); err != nil {
				t.Fatal(err)
			}
			expectAck(t, a, a.Text(t, erin.ID, "", "e1", "muted"))
			expectAck(t, a, a.Text(t, dave.ID, "", "d1", "hi dave"))
			select {
			case n = <-got:
			case <-time.After(10 * time.Second):
				t.Fatal("no push for dave")
			}
			if n.Recipient != dave.ID {
				t.Fatalf("push %+v, want dave's", n)
			}
		})
	}
}

// muter mutes every conversation of one user.
// TestOfflinePushSkipsEvents: a friend request to an offline user is an
// event of their event stream, not a message: no push.
func TestOfflinePushSkipsEvents(t *testing.T) {
	hookURL, got := signedWebhook[push.Notification](t, nil)
	srv := servertest.Start(t, servertest.WithConfig(func(c *server.Config) {
		c.PushWebhook = &push.WebhookConfig{URL: hookURL, Secret: pushSecret}
		c.PushWindow = 100 * time.Millisecond
	}))
	alice, bob, carol := srv.NewUser(t, "alice"), srv.NewUser(t, "bob"), srv.NewUser(t, "carol")
	a := connect(t, srv, alice, "phone")
	friends := starlingv1.NewFriendServiceClient(srv.Dial(t))
	if _, err := friends.SendFriendRequest(servertest.WithToken(t.Context(), a.token), &starlingv1.SendFriendRequestRequest{UserId: bob.ID}); err != nil {
		t.Fatal(err)
	}
	// Then a message to offline carol: hers is the first push.
	expectAck(t, a, a.Text(t, carol.ID, "", "c1", "hi"))
	select {
	case n := <-got:
		if n.Recipient != carol.ID || !strings.HasPrefix(n.ConversationID, "c2c:") {
			t.Fatalf("push %+v, want carol's message only", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no push")
	}
}

// TestOfflinePushBadge: each push carries the recipient's unread count
// across conversations at the time of the push, and it drops once the
// recipient marks messages read.
func TestOfflinePushBadge(t *testing.T) {
	for _, b := range servertest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			hookURL, got := signedWebhook[push.Notification](t, nil)
			srv := servertest.Start(t, servertest.WithStore(b.New(t)), servertest.WithConfig(func(c *server.Config) {
				c.PushWebhook = &push.WebhookConfig{URL: hookURL, Secret: pushSecret, Backoff: 10 * time.Millisecond}
				c.PushWindow = 100 * time.Millisecond
			}))
			alice, bob, carol := srv.NewUser(t, "alice"), srv.NewUser(t, "bob"), srv.NewUser(t, "carol")
			a, c := connect(t, srv, alice, "phone"), connect(t, srv, carol, "phone")
			next := func(wantBadge int64, wantCount int) {
				t.Helper()
				select {
				case n := <-got:
					if n.Recipient != bob.ID || n.Badge != wantBadge || n.Count != wantCount {
						t.Fatalf("push %+v, want bob's with badge %d, count %d", n, wantBadge, wantCount)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("no push")
				}
			}
			// Each message waits for the previous push: one window each.
			expectAck(t, a, a.Text(t, bob.ID, "", "a1", "one"))
			next(1, 1)
			expectAck(t, a, a.Text(t, bob.ID, "", "a2", "two"))
			next(2, 1)
			expectAck(t, c, c.Text(t, bob.ID, "", "c1", "from carol"))
			next(3, 1)
			// Bob reads alice's two (from a device that holds no stream: he
			// stays offline); once that is written, the next push counts
			// carol's message and the new one.
			bobTok := srv.Login(t, bob, "laptop")
			ac := storage.C2CConversationID(alice.ID, bob.ID)
			if _, err := starlingv1.NewChatServiceClient(srv.Dial(t)).MarkRead(servertest.WithToken(t.Context(), bobTok), &starlingv1.MarkReadRequest{ConversationId: ac, Seq: 2}); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				cur, err := srv.Store().ReadCursorOf(t.Context(), bob.ID, ac)
				if err != nil {
					t.Fatal(err)
				}
				if cur.ReadSeq == 2 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("read cursor %d, want 2", cur.ReadSeq)
				}
				time.Sleep(10 * time.Millisecond)
			}
			expectAck(t, a, a.Text(t, bob.ID, "", "a3", "three"))
			next(2, 1)
			// Two messages in one window: one push, counted, with the
			// badge after both.
			expectAck(t, a, a.Text(t, bob.ID, "", "a4", "four"))
			expectAck(t, a, a.Text(t, bob.ID, "", "a5", "five"))
			select {
			case n := <-got:
				// Coalesced (count 2, badge 4), or, if the window closed
				// between them, the first alone (count 1; the badge is read
				// when the push is made: 3, or 4 if "five" was stored by
				// then).
				if n.Count == 2 && n.Badge != 4 || n.Count == 1 && n.Badge != 3 && n.Badge != 4 || n.Count < 1 || n.Count > 2 {
					t.Fatalf("push %+v", n)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no push")
			}
		})
	}
}

// signedWebhook is a local receiver of the node's webhook calls: each
// body must carry a good signature with pushSecret (else 401 and a test
// error), and is decoded into a T sent on the returned channel; check, if
// not nil, looks at the request and the decoded value too.
func signedWebhook[T any](t *testing.T, check func(r *http.Request, v T) error) (string, <-chan T) {
	t.Helper()
	got := make(chan T, 100)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := push.Verify(pushSecret, r.Header.Get(push.HeaderTimestamp), r.Header.Get(push.HeaderSignature), body, time.Now(), time.Minute); err != nil {
			t.Errorf("webhook call: %v", err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var v T
		err := json.Unmarshal(body, &v)
		if err == nil && check != nil {
			err = check(r, v)
		}
		if err != nil {
			t.Errorf("webhook body %s: %v", body, err)
		}
		got <- v
	}))
	t.Cleanup(hook.Close)
	return hook.URL, got
}
