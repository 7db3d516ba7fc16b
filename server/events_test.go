package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server"
	"github.com/starling-im/starling/server/push"
	"github.com/starling-im/starling/server/servertest"
)

type rawEvent struct {
	Type string          `json:"type"`
	Node string          `json:"node"`
	Data json.RawMessage `json:"data"`
}

// eventHeaderMatches: an event call's type header names its body's type.
func eventHeaderMatches(r *http.Request, e rawEvent) error {
	if h := r.Header.Get(push.HeaderEvent); h != e.Type {
		return fmt.Errorf("header %s %q, body type %q", push.HeaderEvent, h, e.Type)
	}
	return nil
}

// TestEventWebhook: the enabled event types reach the event webhook,
// signed; the others do not.
func TestEventWebhook(t *testing.T) {
	for _, b := range servertest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			hookURL, got := signedWebhook(t, eventHeaderMatches)
			srv := servertest.Start(t, servertest.WithStore(b.New(t)), servertest.WithConfig(func(c *server.Config) {
				c.EventWebhook = &push.WebhookConfig{URL: hookURL, Secret: pushSecret, Workers: 1}
				c.EventTypes = []string{push.EventMessageStored, push.EventGroupChanged, push.EventUserOnline}
			}))
			next := func(want string) rawEvent {
				t.Helper()
				select {
				case e := <-got:
					if e.Type != want {
						t.Fatalf("event %s %s, want %s", e.Type, e.Data, want)
					}
					return e
				case <-time.After(10 * time.Second):
					t.Fatalf("no %s event", want)
					return rawEvent{}
				}
			}
			alice, bob := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
			a := connect(t, srv, alice, "phone")
			var dev push.DeviceData
			if e := next(push.EventUserOnline); json.Unmarshal(e.Data, &dev) != nil || dev.UserID != alice.ID || dev.DeviceID != "phone" {
				t.Fatalf("online event %s", e.Data)
			}
			expectAck(t, a, a.Text(t, bob.ID, "", "m1", "hello"))
			var m push.MessageData
			if e := next(push.EventMessageStored); json.Unmarshal(e.Data, &m) != nil || m.SenderID != alice.ID || m.Seq != 1 || m.Content.Text != "hello" || m.ClientMsgID != "m1" {
				t.Fatalf("message event %s", e.Data)
			}
			// Bob leaves a group: group.changed. user.offline is not
			// enabled, so alice closing her stream sends nothing before.
			g := newGroup(t, srv, a, bob)
			bobTok := srv.Login(t, bob, "phone")
			a.Close()
			// A friend request changes a relation, not a group: no event.
			if _, err := starlingv1.NewFriendServiceClient(srv.Dial(t)).SendFriendRequest(servertest.WithToken(t.Context(), bobTok), &starlingv1.SendFriendRequestRequest{UserId: alice.ID}); err != nil {
				t.Fatal(err)
			}
			if _, err := starlingv1.NewGroupServiceClient(srv.Dial(t)).LeaveGroup(servertest.WithToken(t.Context(), bobTok), &starlingv1.LeaveGroupRequest{GroupId: g.GetGroupId()}); err != nil {
				t.Fatal(err)
			}
			var gd push.GroupData
			if e := next(push.EventGroupChanged); json.Unmarshal(e.Data, &gd) != nil || gd.GroupID != g.GetGroupId() {
				t.Fatalf("group event %s", e.Data)
			}
		})
	}
}

// TestFriendEventWebhook: every relationship change is one signed
// friend.changed event naming who did what to whom, in order; blocks
// included (opt-in, like every type). Messages are not friend events.
func TestFriendEventWebhook(t *testing.T) {
	for _, b := range servertest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			hookURL, got := signedWebhook(t, eventHeaderMatches)
			srv := servertest.Start(t, servertest.WithStore(b.New(t)), servertest.WithConfig(func(c *server.Config) {
				c.EventWebhook = &push.WebhookConfig{URL: hookURL, Secret: pushSecret, Workers: 1}
				c.EventTypes = []string{push.EventFriendChanged}
			}))
			alice, bob, carol := srv.NewUser(t, "alice"), srv.NewUser(t, "bob"), srv.NewUser(t, "carol")
			a, bo := connect(t, srv, alice, "phone"), connect(t, srv, bob, "phone")
			af, bf := friendsOf(t, srv, a), friendsOf(t, srv, bo)
			want := func(action string, actor, user servertest.User, message string) {
				t.Helper()
				select {
				case e := <-got:
					var d push.FriendData
					if e.Type != push.EventFriendChanged || json.Unmarshal(e.Data, &d) != nil ||
						d != (push.FriendData{Action: action, ActorID: actor.ID, UserID: user.ID, Message: message}) {
						t.Fatalf("event %s %s, want %s by %s to %s", e.Type, e.Data, action, actor.Username, user.Username)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("no %s event", action)
				}
			}
			ok := func(_ any, err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			af.request(t, bob.ID) // message "hi"
			want(push.FriendRequest, alice, bob, "hi")
			// A message is no friend event (message.stored is off).
			expectAck(t, a, a.Text(t, bob.ID, "", "m1", "hello"))
			bf.accept(t, alice.ID)
			want(push.FriendAccept, bob, alice, "")
			ok(af.c.RemoveFriend(af.ctx, &starlingv1.RemoveFriendRequest{UserId: bob.ID}))
			want(push.FriendRemove, alice, bob, "")
			af.request(t, bob.ID)
			want(push.FriendRequest, alice, bob, "hi")
			ok(af.c.CancelFriendRequest(af.ctx, &starlingv1.CancelFriendRequestRequest{UserId: bob.ID}))
			want(push.FriendCancel, alice, bob, "")
			bf.request(t, alice.ID)
			want(push.FriendRequest, bob, alice, "hi")
			ok(af.c.DeclineFriendRequest(af.ctx, &starlingv1.DeclineFriendRequestRequest{UserId: bob.ID}))
			want(push.FriendDecline, alice, bob, "")
			ok(af.c.BlockUser(af.ctx, &starlingv1.BlockUserRequest{UserId: carol.ID}))
			want(push.FriendBlock, alice, carol, "")
			// Blocking twice changes nothing: no event.
			ok(af.c.BlockUser(af.ctx, &starlingv1.BlockUserRequest{UserId: carol.ID}))
			ok(af.c.UnblockUser(af.ctx, &starlingv1.UnblockUserRequest{UserId: carol.ID}))
			want(push.FriendUnblock, alice, carol, "")
			// A refused change sends nothing: the next event is the last.
			_, err := af.c.AcceptFriendRequest(af.ctx, &starlingv1.AcceptFriendRequestRequest{UserId: carol.ID})
			wantCode(t, err, codes.NotFound, "accept a request never made")
			ok(bf.c.BlockUser(bf.ctx, &starlingv1.BlockUserRequest{UserId: alice.ID}))
			want(push.FriendBlock, bob, alice, "")
		})
	}
}
