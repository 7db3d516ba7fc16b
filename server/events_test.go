package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

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

// TestEventWebhook: the enabled event types reach the event webhook,
// signed; the others do not.
func TestEventWebhook(t *testing.T) {
	for _, b := range servertest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			got := make(chan rawEvent, 100)
			hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				if err := push.Verify(pushSecret, r.Header.Get(push.HeaderTimestamp), r.Header.Get(push.HeaderSignature), body, time.Now(), time.Minute); err != nil {
					t.Errorf("event call: %v", err)
				}
				var e rawEvent
				if err := json.Unmarshal(body, &e); err != nil || r.Header.Get(push.HeaderEvent) != e.Type {
					t.Errorf("event body %s (header %q): %v", body, r.Header.Get(push.HeaderEvent), err)
				}
				got <- e
			}))
			defer hook.Close()
			srv := servertest.Start(t, servertest.WithStore(b.New(t)), servertest.WithConfig(func(c *server.Config) {
				c.EventWebhook = &push.WebhookConfig{URL: hook.URL, Secret: pushSecret, Workers: 1}
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
