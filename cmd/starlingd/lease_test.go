package main

import (
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/redistest"
	"github.com/starling-im/starling/storage"
	"github.com/starling-im/starling/storage/postgres/pgtest"
	"github.com/starling-im/starling/storage/sqlite"
)

func noEnv(string) string { return "" }

// Without --redis, one node per database: a second starlingd on a
// database that a live node holds is refused at once with a clear
// message, and starts once the first has stopped (its lease released).
func TestRunRefusesASecondNodeOnOneDatabase(t *testing.T) {
	for name, db := range map[string]func(t *testing.T) []string{
		"sqlite": func(t *testing.T) []string { return []string{"--data-dir", t.TempDir()} },
		"postgres": func(t *testing.T) []string {
			return []string{"--db", pgtest.NewDatabase(t), "--token-secret", strings.Repeat("s", 32)}
		},
	} {
		t.Run(name, func(t *testing.T) {
			args := db(t)
			cfg := func(node string) config {
				c, err := parseConfig(append([]string{"--listen", freeAddr(t), "--node-id", node, "--bcrypt-cost", "4", "--log-level", "error"}, args...), noEnv)
				if err != nil {
					t.Fatal(err)
				}
				return c
			}
			stop := start(t, cfg("node-a"))
			begin := time.Now()
			err := run(t.Context(), cfg("node-b"), io.Discard)
			if err == nil {
				t.Fatal("a second node on the same database started")
			}
			msg := err.Error()
			for _, want := range []string{"another starlingd (node node-a, number 0) holds this database until ", "without --redis Starling runs one node per database", "stop it, wait ", "(--redis)"} {
				if !strings.Contains(msg, want) {
					t.Fatalf("refusal %q does not say %q", msg, want)
				}
			}
			if strings.Contains(msg, "\n") || time.Since(begin) > 5*time.Second {
				t.Fatalf("refusal took %v: %q", time.Since(begin), msg)
			}
			if err := stop(); err != nil {
				t.Fatalf("first node: %v", err)
			}
			// Released on shutdown: the next node starts at once.
			if err := start(t, cfg("node-b"))(); err != nil {
				t.Fatalf("second node after the first stopped: %v", err)
			}
		})
	}
}

// A lease left by this node's own earlier run (killed, so never released)
// is waited out, not refused: the restart starts once it lapsed.
func TestRunWaitsOutItsOwnKilledRun(t *testing.T) {
	dir := t.TempDir()
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "starling.db"))
	if err != nil {
		t.Fatal(err)
	}
	const ttl = 1500 * time.Millisecond
	if _, err := st.AcquireNodeLease(t.Context(), storage.LeaseRequest{Holder: "node-a/killed", Node: "node-a", TTL: ttl, Grace: storage.NodeLeaseGrace}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	c, err := parseConfig([]string{"--listen", freeAddr(t), "--node-id", "node-a", "--data-dir", dir, "--bcrypt-cost", "4", "--log-level", "error"}, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	stop := start(t, c)
	if waited := time.Since(begin); waited < ttl/2 {
		t.Fatalf("started after %v, before the killed run's lease (%v) lapsed", waited, ttl)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// With --redis, nodes on one database form a cluster: a second node with
// its own id starts beside the first, and a message sent through one
// reaches a device on the other; a node with a live node's id is refused.
func TestRunClusterNodes(t *testing.T) {
	redisURL := redistest.URL(t)
	_, prefix := redistest.Client(t) // its keys are deleted when the test ends
	dbURL := pgtest.NewDatabase(t)
	cfg := func(node string) config {
		c, err := parseConfig([]string{"--listen", freeAddr(t), "--node-id", node, "--bcrypt-cost", "4", "--log-level", "error",
			"--db", dbURL, "--token-secret", strings.Repeat("s", 32), "--redis", redisURL, "--redis-prefix", prefix,
			"--login-rate", "0", "--register-rate", "0"}, noEnv)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := cfg("node-a"), cfg("node-b")
	stopA := start(t, a)
	stopB := start(t, b)

	err := run(t.Context(), cfg("node-a"), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "another starlingd named node-a") || !strings.Contains(err.Error(), "--node-id") {
		t.Fatalf("a second node-a: %v", err)
	}

	alice := registerAndLogin(t, a.Listen, "alice")
	bob := registerAndLogin(t, b.Listen, "bob")
	bs := openStream(t, b.Listen, bob.token)
	as := openStream(t, a.Listen, alice.token)
	if err := as.Send(&starlingv1.StreamRequest{Ref: 1, Frame: &starlingv1.StreamRequest_Send{Send: &starlingv1.Send{
		To: &starlingv1.Send_UserId{UserId: bob.id}, ClientMsgId: "m1", Content: &starlingv1.Content{Text: "across"},
	}}}); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := bs.Recv()
		if err != nil {
			t.Fatalf("bob's stream on node-b: %v", err)
		}
		if p := f.GetPush(); p != nil {
			if m := p.GetMessages()[0]; m.GetContent().GetText() != "across" || m.GetSenderId() != alice.id {
				t.Fatalf("bob was pushed %v", m)
			}
			break
		}
		if n := f.GetNotify(); n != nil {
			break // pulled instead of pushed: delivered all the same
		}
	}
	if err := stopA(); err != nil {
		t.Fatalf("node-a: %v", err)
	}
	if err := stopB(); err != nil {
		t.Fatalf("node-b: %v", err)
	}
}

type account struct{ id, token string }

// registerAndLogin registers username through the node at addr and logs
// its device "d" in.
func registerAndLogin(t *testing.T, addr, username string) account {
	t.Helper()
	authc := starlingv1.NewAuthServiceClient(dialNode(t, addr))
	reg, err := authc.Register(t.Context(), &starlingv1.RegisterRequest{Username: username, Password: "password1"})
	if err != nil {
		t.Fatalf("register %s: %v", username, err)
	}
	login, err := authc.Login(t.Context(), &starlingv1.LoginRequest{Username: username, Password: "password1", DeviceId: "d"})
	if err != nil {
		t.Fatalf("login %s: %v", username, err)
	}
	return account{id: reg.GetUser().GetUserId(), token: login.GetToken()}
}

// openStream opens a chat Stream on the node at addr and reads its Welcome.
func openStream(t *testing.T, addr, token string) grpc.BidiStreamingClient[starlingv1.StreamRequest, starlingv1.StreamResponse] {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	st, err := starlingv1.NewChatServiceClient(cc).Stream(contextWithToken(t.Context(), token))
	if err != nil {
		t.Fatal(err)
	}
	if f, err := st.Recv(); err != nil || f.GetWelcome() == nil {
		t.Fatalf("first frame %v, %v; want Welcome", f, err)
	}
	return st
}
