package presence

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/starling-im/starling/server/bus"
)

// Presence records which node holds each online device.
type Presence interface {
	// Register records that dev's stream is open on node, replacing any
	// earlier stream of the device.
	Register(ctx context.Context, node string, dev bus.DeviceKey) error
	// Unregister forgets dev's stream on node, unless a newer stream of the
	// device (another session or another node) replaced it meanwhile.
	Unregister(ctx context.Context, node string, dev bus.DeviceKey) error
	// Locate groups users by the node holding their devices (see
	// bus.Locator).
	Locate(ctx context.Context, users []string) (map[string][]string, error)
	// Online reports which of users have a device with a stream open on a
	// live node (those missing from the map have none): from memory, no
	// remote call, so it may lag another node's news by the time its
	// event takes to arrive.
	Online(ctx context.Context, users []string) (map[string]bool, error)
}

// Local is the Presence of one node (see the package comment).
type Local struct {
	node string

	mu    sync.Mutex
	users map[string]map[string]where // user → device → stream
	// foreign counts devices registered on other nodes; while it is 0,
	// Locate places everyone on this node without a lookup.
	foreign atomic.Int64
}

type where struct {
	node    string
	session uint64
}

var (
	_ Presence    = (*Local)(nil)
	_ bus.Locator = (*Local)(nil)
)

// NewLocal returns the Presence of node.
func NewLocal(node string) *Local {
	return &Local{node: node, users: make(map[string]map[string]where)}
}

// Register implements Presence.
func (l *Local) Register(_ context.Context, node string, dev bus.DeviceKey) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	devs := l.users[dev.UserID]
	if devs == nil {
		devs = make(map[string]where)
		l.users[dev.UserID] = devs
	}
	if old, ok := devs[dev.DeviceID]; ok && old.node != l.node {
		l.foreign.Add(-1)
	}
	devs[dev.DeviceID] = where{node: node, session: dev.Session}
	if node != l.node {
		l.foreign.Add(1)
	}
	return nil
}

// Unregister implements Presence.
func (l *Local) Unregister(_ context.Context, node string, dev bus.DeviceKey) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	devs := l.users[dev.UserID]
	if w, ok := devs[dev.DeviceID]; !ok || w != (where{node: node, session: dev.Session}) {
		return nil // replaced meanwhile, or never registered
	}
	delete(devs, dev.DeviceID)
	if len(devs) == 0 {
		delete(l.users, dev.UserID)
	}
	if node != l.node {
		l.foreign.Add(-1)
	}
	return nil
}

// Locate implements Presence. Users with no device registered elsewhere
// are placed on this node, registered or not: its hub skips the offline
// ones.
func (l *Local) Locate(_ context.Context, users []string) (map[string][]string, error) {
	if l.foreign.Load() == 0 {
		return map[string][]string{l.node: users}, nil
	}
	out := make(map[string][]string)
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, u := range users {
		devs := l.users[u]
		if len(devs) == 0 {
			out[l.node] = append(out[l.node], u)
			continue
		}
		var seen [4]string // nodes u was placed on; a user has few devices
		placed := seen[:0]
		for _, w := range devs {
			if !contains(placed, w.node) {
				placed = append(placed, w.node)
				out[w.node] = append(out[w.node], u)
			}
		}
	}
	return out, nil
}

// Online implements Presence.
func (l *Local) Online(_ context.Context, users []string) (map[string]bool, error) {
	out := make(map[string]bool, len(users))
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, u := range users {
		if len(l.users[u]) > 0 {
			out[u] = true
		}
	}
	return out, nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
