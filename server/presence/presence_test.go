package presence

import (
	"slices"
	"testing"

	"github.com/starling-im/starling/server/bus"
)

func key(user, device string, session uint64) bus.DeviceKey {
	return bus.DeviceKey{UserID: user, DeviceID: device, Session: session}
}

func sortedLocate(t *testing.T, l *Local, users ...string) map[string][]string {
	t.Helper()
	m, err := l.Locate(t.Context(), users)
	if err != nil {
		t.Fatal(err)
	}
	for n := range m {
		slices.Sort(m[n])
	}
	return m
}

// One node: everyone is here, without a lookup; registrations are kept.
func TestLocalSingleNode(t *testing.T) {
	l := NewLocal("a")
	if err := l.Register(t.Context(), "a", key("u", "d", 1)); err != nil {
		t.Fatal(err)
	}
	got := sortedLocate(t, l, "u", "v")
	if len(got) != 1 || !slices.Equal(got["a"], []string{"u", "v"}) {
		t.Fatalf("Locate = %v, want all on a", got)
	}
	if len(l.users["u"]) != 1 {
		t.Fatalf("registration not kept: %v", l.users)
	}
}

// A replaced stream's late Unregister does not remove the newer stream of
// the device, on this node or another.
func TestLocalReplacedStreamStays(t *testing.T) {
	ctx := t.Context()
	l := NewLocal("a")
	l.Register(ctx, "a", key("u", "d", 1))
	l.Register(ctx, "a", key("u", "d", 2)) // the device reconnected
	l.Unregister(ctx, "a", key("u", "d", 1))
	if w := l.users["u"]["d"]; w.session != 2 {
		t.Fatalf("newer stream removed: %+v", l.users)
	}

	l.Register(ctx, "b", key("u", "d", 1)) // then moved to node b
	l.Unregister(ctx, "a", key("u", "d", 2))
	if got := sortedLocate(t, l, "u"); !slices.Equal(got["b"], []string{"u"}) || len(got) != 1 {
		t.Fatalf("after the old node's unregister: %v, want u on b", got)
	}
	l.Unregister(ctx, "b", key("u", "d", 1))
	if len(l.users) != 0 || l.foreign.Load() != 0 {
		t.Fatalf("left %v, foreign %d", l.users, l.foreign.Load())
	}
}

// Devices on other nodes are located exactly: a user with devices on two
// nodes is on both, users with none are here.
func TestLocalLocateAcrossNodes(t *testing.T) {
	ctx := t.Context()
	l := NewLocal("a")
	l.Register(ctx, "a", key("u1", "phone", 1))
	l.Register(ctx, "b", key("u1", "laptop", 1))
	l.Register(ctx, "b", key("u2", "phone", 2))
	l.Register(ctx, "b", key("u2", "tablet", 3))
	l.Register(ctx, "c", key("u3", "phone", 1))
	got := sortedLocate(t, l, "u1", "u2", "u3", "u4")
	want := map[string][]string{"a": {"u1", "u4"}, "b": {"u1", "u2"}, "c": {"u3"}}
	if len(got) != len(want) {
		t.Fatalf("Locate = %v, want %v", got, want)
	}
	for n, us := range want {
		if !slices.Equal(got[n], us) {
			t.Fatalf("Locate = %v, want %v", got, want)
		}
	}
}

// Online tells registered users from the others, wherever their device is.
func TestLocalOnline(t *testing.T) {
	ctx := t.Context()
	l := NewLocal("a")
	l.Register(ctx, "a", key("u1", "phone", 1))
	l.Register(ctx, "b", key("u2", "phone", 2))
	got, err := l.Online(ctx, []string{"u1", "u2", "u3"})
	if err != nil || !got["u1"] || !got["u2"] || got["u3"] {
		t.Fatalf("Online = %v, %v; want u1 and u2", got, err)
	}
	l.Unregister(ctx, "a", key("u1", "phone", 1))
	if got, _ := l.Online(ctx, []string{"u1", "u2"}); got["u1"] || !got["u2"] {
		t.Fatalf("after unregister: %v", got)
	}
}
