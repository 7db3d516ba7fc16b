package client_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/starling-im/starling/client"
	"github.com/starling-im/starling/server/servertest"
)

// A backlog far larger than gRPC's default 4 MiB receive limit reaches a
// Go client with default options, through Sync after a reconnect and
// through packed pushes while online: the server bounds every frame in
// bytes, and the session neither spins nor fails.
func TestLargeBacklog(t *testing.T) {
	srv := servertest.Start(t)
	register(t, srv, "alice")
	bobID := register(t, srv, "bob")
	alice := open(t, login(t, srv, "alice", "phone"))
	big := strings.Repeat("x", 60<<10)
	const offline = 80 // 4.8 MB waiting for bob
	for i := range offline {
		send(t, alice, client.ToUser(bobID), fmt.Sprintf("%d %s", i, big))
	}
	bob := open(t, login(t, srv, "bob", "phone"))
	got := receive(t, bob, offline)

	// Online: sent concurrently, so they queue and pack into Push frames.
	const online = 60
	var wg sync.WaitGroup
	for i := range online {
		wg.Go(func() {
			if _, err := alice.SendText(t.Context(), client.ToUser(bobID), fmt.Sprintf("%d %s", offline+i, big)); err != nil {
				t.Errorf("send: %v", err)
			}
		})
	}
	wg.Wait()
	got = append(got, receive(t, bob, online)...)
	for i, m := range got {
		if m.GetSeq() != int64(i+1) {
			t.Fatalf("message %d has seq %d", i, m.GetSeq())
		}
	}
	if err := bob.Err(); err != nil {
		t.Fatalf("session ended: %v", err)
	}
}
