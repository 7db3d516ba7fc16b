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
	p, err = ParseConversationID(EventsConversationID("u1"))
	if err != nil || p.Kind != KindEvents || p.UserID != "u1" || !IsEventsConversation("evt:u1") || IsEventsConversation("grp:u1") {
		t.Fatalf("parse events: %+v %v", p, err)
	}
	for _, bad := range []string{"", "c2c:", "c2c:a", "c2c:a:", "c2c::b", "c2c:b:a", "c2c:a:b:c", "grp:", "grp:a:b", "dm:a:b", "GRP:x", "evt:", "evt:a:b"} {
		if _, err := ParseConversationID(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzParseConversationID: whatever a client sends, parsing never panics,
// what parses is exactly what the server would have made (it formats back
// to the same id: no two spellings of one conversation), its parts are
// non-empty and free of ':', and a refusal quotes a bounded part of the id.
func FuzzParseConversationID(f *testing.F) {
	for _, s := range []string{"c2c:ua:ub", "grp:g1", "c2c:b:a", "", "grp:", "c2c:a:b:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		p, err := ParseConversationID(id)
		if err != nil {
			if n := len(err.Error()); n > 100+6*maxQuotedID {
				t.Fatalf("error for a %d-byte id is %d bytes", len(id), n)
			}
			return
		}
		switch p.Kind {
		case KindC2C:
			a, b := p.Users[0], p.Users[1]
			if C2CConversationID(a, b) != id || !validPart(a) || !validPart(b) || b < a {
				t.Fatalf("%q parsed to %+v, which does not round-trip", id, p)
			}
			if len(a)+len(b)+len(c2cPrefix)+1 != len(id) {
				t.Fatalf("%q parsed to parts of %d and %d bytes", id, len(a), len(b))
			}
		case KindGroup:
			if GroupConversationID(p.GroupID) != id || !validPart(p.GroupID) || p.Users != [2]string{} {
				t.Fatalf("%q parsed to %+v, which does not round-trip", id, p)
			}
		case KindEvents:
			if EventsConversationID(p.UserID) != id || !validPart(p.UserID) {
				t.Fatalf("%q parsed to %+v, which does not round-trip", id, p)
			}
		default:
			t.Fatalf("%q parsed to kind %d", id, p.Kind)
		}
	})
}

func validPart(s string) bool { return s != "" && !strings.Contains(s, ":") }

// FuzzConversationIDRoundTrip: every id the server makes from valid user
// and group ids (non-empty, no ':') parses back to them, in either order of
// the users; from anything else it makes an id that does not parse, so a
// user id with a ':' cannot pass for another conversation.
func FuzzConversationIDRoundTrip(f *testing.F) {
	f.Add("ua", "ub")
	f.Add("ub", "ua")
	f.Add("u", "u")
	f.Add("a:b", "c")
	f.Add("", "x")
	f.Add("é", "\x00")
	f.Fuzz(func(t *testing.T, a, b string) {
		c2c := C2CConversationID(a, b)
		if C2CConversationID(b, a) != c2c {
			t.Fatalf("C2CConversationID(%q, %q) depends on the order", a, b)
		}
		p, err := ParseConversationID(c2c)
		if validPart(a) && validPart(b) {
			want := [2]string{min(a, b), max(a, b)}
			if err != nil || p.Kind != KindC2C || p.Users != want {
				t.Fatalf("%q (from %q, %q) parsed to %+v, %v", c2c, a, b, p, err)
			}
		} else if err == nil {
			t.Fatalf("%q, made from %q and %q, parsed to %+v", c2c, a, b, p)
		}
		grp := GroupConversationID(a)
		p, err = ParseConversationID(grp)
		if validPart(a) {
			if err != nil || p.Kind != KindGroup || p.GroupID != a {
				t.Fatalf("%q parsed to %+v, %v", grp, p, err)
			}
		} else if err == nil {
			t.Fatalf("%q, made from %q, parsed to %+v", grp, a, p)
		}
	})
}
