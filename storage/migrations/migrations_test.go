package migrations

import (
	"testing"
	"testing/fstest"
)

func TestLoadOrdersByVersion(t *testing.T) {
	fsys := fstest.MapFS{
		"m/0010_later.sql": {Data: []byte("B")},
		"m/0002_first.sql": {Data: []byte("A")},
	}
	ms, err := Load(fsys, "m")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].Version != 2 || ms[0].SQL != "A" || ms[1].Version != 10 || ms[1].Name != "0010_later.sql" {
		t.Fatalf("loaded %+v", ms)
	}
}

func TestLoadRejectsBadNames(t *testing.T) {
	for name, fsys := range map[string]fstest.MapFS{
		"no version":     {"m/init.sql": {}},
		"zero":           {"m/0000_x.sql": {}},
		"not a number":   {"m/v1_x.sql": {}},
		"shared version": {"m/0001_a.sql": {}, "m/01_b.sql": {}},
	} {
		if _, err := Load(fsys, "m"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := Load(fstest.MapFS{}, "missing"); err == nil {
		t.Error("missing directory accepted")
	}
}
