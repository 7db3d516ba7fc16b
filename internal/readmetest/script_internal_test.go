package readmetest

import (
	"slices"
	"strings"
	"testing"
)

// The markup's rules, on their own: TestREADME trusts them to fail when
// the README and the programs disagree.
func TestMatchLines(t *testing.T) {
	for _, c := range []struct {
		patterns, out []string
		want          bool
	}{
		{nil, nil, true},
		{nil, []string{"something"}, false}, // a command said to print nothing
		{[]string{"sent to bob: c2c:… #1"}, []string{"sent to bob: c2c:ua:ub #1"}, true},
		{[]string{"sent to bob: c2c:… #1"}, []string{"sent to bob: c2c:ua:ub #2"}, false},
		{[]string{"sent to bob: c2c:… #1"}, []string{"sent to bob: c2c:ua:ub #1", "more"}, false},
		{[]string{"a", "…"}, []string{"a", "b", "c"}, true},
		{[]string{"…", "c"}, []string{"a", "b", "c"}, true},
		{[]string{"…", "x", "…"}, []string{"a", "b", "c"}, false},
		{[]string{"@bob 0 unread"}, []string{"@bob\t\t  0 unread"}, true}, // spaces: any run of blanks
		{[]string{"@bob 0 unread"}, []string{"@bob0 unread"}, false},
		{[]string{"a.b"}, []string{"axb"}, false}, // no regexp leaks through
	} {
		if got := matchLines(c.patterns, c.out); got != c.want {
			t.Errorf("matchLines(%q, %q) = %v, want %v", c.patterns, c.out, got, c.want)
		}
	}
}

func TestParseREADME(t *testing.T) {
	readme := strings.Join([]string{
		"prose",
		"<!-- readme-test: terminal bob -->",
		"```sh",
		"make build   # once",
		"export X=1",
		"./bin/starling send bob 'hi' \\",
		"  more",
		"# → sent",
		"# → (exit status 1)",
		"cat > f <<JSON",
		"# not a comment inside a here-document",
		"JSON",
		"./bin/starling listen",
		"# → listening",
		"# alice's terminal → … hi",
		"# Ctrl-C (stop)",
		"```",
		"```sh",
		"./bin/starling not-run",
		"```",
	}, "\n")
	blocks, err := parseREADME(readme)
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 1 || blocks[0].terminal != "bob" {
		t.Fatalf("blocks: %+v", blocks)
	}
	var kinds []stepKind
	for _, s := range blocks[0].steps {
		kinds = append(kinds, s.kind)
	}
	want := []stepKind{buildStep, runStep, runStep, runStep, bgStep, watchStep, watchStep, stopStep}
	if !slices.Equal(kinds, want) {
		t.Fatalf("step kinds %v, want %v", kinds, want)
	}
	send := blocks[0].steps[2]
	if send.cmd != "./bin/starling send bob 'hi' \\\n  more" || !slices.Equal(send.expect, []string{"sent"}) || send.exit != 1 {
		t.Errorf("send step: %+v", send)
	}
	if hd := blocks[0].steps[3]; !strings.HasSuffix(hd.cmd, "\nJSON") || len(hd.expect) != 0 {
		t.Errorf("here-document step: %+v", hd)
	}
	if w := blocks[0].steps[6]; w.target != "alice" || w.expect[0] != "… hi" {
		t.Errorf("watch step: %+v", w)
	}
	for _, bad := range []string{
		"<!-- readme-test: terminal bob -->\nno fence",
		"<!-- readme-test: terminal bob -->\n```sh\n# → output of nothing\n```",
		"<!-- readme-test: terminal bob -->\n```sh\ncat <<EOF\nnever ends\n```",
	} {
		if _, err := parseREADME(bad); err == nil {
			t.Errorf("parseREADME(%q) took it", bad)
		}
	}
}
