package storage

import (
	"strings"
	"testing"
)

func TestConversationIDs(t *testing.T) {
	if a, b := C2CConversationID("ub", "ua"), C2CConversationID("ua", "ub"); a != b || a != "c2c:ua:ub" {
		t.Fatalf("c2c ids %q %q", a, b)
	}
	p, err := ParseConversationID("c2c:ua:ub")
	if err != nil || p.Kind != KindC2C || p.Users != [2]string{"ua", "ub"} {
		t.Fatalf("parse c2c: %+v %v", p, err)
	}
	p, err = ParseConversationID(GroupConversationID("g1"))
	if err != nil || p.Kind != KindGroup || p.GroupID != "g1" {
		t.Fatalf("parse group: %+v %v", p, err)
	}
	for _, bad := range []string{"", "c2c:", "c2c:a", "c2c:a:", "c2c::b", "c2c:b:a", "c2c:a:b:c", "grp:", "grp:a:b", "dm:a:b", "GRP:x"} {
		if _, err := ParseConversationID(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzParseConversationID: whatever a client sends, parsing never panics,
// and what parses is exactly what the server would have made.
func FuzzParseConversationID(f *testing.F) {
	for _, s := range []string{"c2c:ua:ub", "grp:g1", "c2c:b:a", "", "grp:", "c2c:a:b:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		p, err := ParseConversationID(id)
		if err != nil {
			return
		}
		switch p.Kind {
		case KindC2C:
			if C2CConversationID(p.Users[0], p.Users[1]) != id || strings.Contains(p.Users[0], ":") {
				t.Fatalf("%q parsed to %+v, which does not round-trip", id, p)
			}
		case KindGroup:
			if GroupConversationID(p.GroupID) != id {
				t.Fatalf("%q parsed to %+v, which does not round-trip", id, p)
			}
		default:
			t.Fatalf("%q parsed to kind %d", id, p.Kind)
		}
	})
}
