package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

// benchPassword is every bench user's password. Register it cheaply: the
// server should run with --bcrypt-cost 4 for benchmarks.
const benchPassword = "starling-bench-password"

// benchDevice is the device id every bench user logs in with.
const benchDevice = "bench"

// account is a registered bench user; Token is empty until it logged in.
type account struct {
	Username string
	UserID   string
	Token    string
}

// withToken returns ctx carrying token as the bearer credential.
func withToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// setupUsers registers n fresh users, in parallel, and logs the first
// login of them in. Names carry the run id, so runs never collide. User i
// is set up through target i mod n: in a cluster a user registered on one
// node exists on all, and so does a token issued by any.
func (e *env) setupUsers(ctx context.Context, role string, n, login int) ([]account, error) {
	auths := make([]starlingv1.AuthServiceClient, len(e.setup))
	for i := range auths {
		cc, err := e.setupConn(i)
		if err != nil {
			return nil, err
		}
		auths[i] = starlingv1.NewAuthServiceClient(cc)
	}
	accts := make([]account, n)
	var registered, loggedIn atomic.Int64
	stop := e.progress(func(el time.Duration) string {
		r, l := registered.Load(), loggedIn.Load()
		return fmt.Sprintf("setup %s: registered %d/%d, logged in %d/%d (%.0f calls/s)",
			role, r, n, l, login, float64(r+l)/el.Seconds())
	})
	defer stop()
	err := parallel(ctx, n, e.cfg.SetupConcurrency, func(ctx context.Context, i int) error {
		auth := auths[roundRobin(i, len(auths))]
		name := fmt.Sprintf("%s-%s%d", e.runID, role, i)
		cctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
		defer cancel()
		res, err := auth.Register(cctx, &starlingv1.RegisterRequest{Username: name, Password: benchPassword})
		if err != nil {
			return fmt.Errorf("register %s: %w", name, err)
		}
		accts[i] = account{Username: name, UserID: res.GetUser().GetUserId()}
		registered.Add(1)
		if i >= login {
			return nil
		}
		lres, err := auth.Login(cctx, &starlingv1.LoginRequest{Username: name, Password: benchPassword, DeviceId: benchDevice})
		if err != nil {
			return fmt.Errorf("log %s in: %w", name, err)
		}
		accts[i].Token = lres.GetToken()
		loggedIn.Add(1)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("set up %s users: %w", role, err)
	}
	return accts, nil
}

// groupChunkBytes bounds the member ids one CreateGroup/AddMembers call
// carries, below the server's default frame limit (256 KiB). One call
// holds 10,000 ids of today's length, so the whole group is made at once:
// every member joins at seq 0. An AddMembers after it writes a system
// message, and the members it adds join after that seq (docs/social.md,
// "Groups"), which this bench's devices, expecting every group seq from 1,
// would take for a gap.
const groupChunkBytes = 200 << 10

// chunkIDs splits ids into runs of at most groupChunkBytes.
func chunkIDs(ids []string) [][]string {
	var out [][]string
	start, size := 0, 0
	for i, id := range ids {
		if n := len(id) + 3; size+n > groupChunkBytes && i > start {
			out = append(out, ids[start:i])
			start, size = i, 0
		}
		size += len(id) + 3
	}
	if start < len(ids) {
		out = append(out, ids[start:])
	}
	return out
}

// createGroup makes a group owned by owner with every member in it and
// returns its id.
func (e *env) createGroup(ctx context.Context, owner account, members []account) (string, error) {
	cc, err := e.setupConn(0)
	if err != nil {
		return "", err
	}
	gs := starlingv1.NewGroupServiceClient(cc)
	ids := make([]string, 0, len(members))
	for _, m := range members {
		if m.UserID != owner.UserID {
			ids = append(ids, m.UserID)
		}
	}
	ctx = withToken(ctx, owner.Token)
	chunks := chunkIDs(ids)
	var first []string
	if len(chunks) > 0 {
		first, chunks = chunks[0], chunks[1:]
	}
	cctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
	defer cancel()
	res, err := gs.CreateGroup(cctx, &starlingv1.CreateGroupRequest{Name: "bench " + e.runID, MemberIds: first})
	if err != nil {
		return "", fmt.Errorf("create group: %w", err)
	}
	gid := res.GetGroup().GetGroupId()
	for _, chunk := range chunks {
		if _, err := gs.AddMembers(cctx, &starlingv1.AddMembersRequest{GroupId: gid, UserIds: chunk}); err != nil {
			return "", fmt.Errorf("add %d members to group %s: %w", len(chunk), gid, err)
		}
	}
	return gid, nil
}

// setupConn is the connection setup calls to target slot node share (a
// pool of its own, apart from the streams' connections): unary calls
// multiplex well over one HTTP/2 connection.
func (e *env) setupConn(node int) (*grpc.ClientConn, error) {
	return e.setup[node].conn(0)
}

// parallel runs fn(0..n-1) with at most conc at once (conc <= 0: all at
// once). The first error cancels the rest and is returned.
func parallel(ctx context.Context, n, conc int, fn func(ctx context.Context, i int) error) error {
	if conc <= 0 || conc > n {
		conc = n
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}
