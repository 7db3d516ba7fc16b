package client_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// docs/protocol.md's checklist ("A correct client must …") maps every rule
// to tests in both clients. Each name must be a test that exists, so the
// mapping cannot rot when a test is renamed or removed, and no row may be
// left without a test in either client.
func TestProtocolChecklistNamesRealTests(t *testing.T) {
	doc, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "## A correct client must …")
	if !ok {
		t.Fatal("docs/protocol.md has no section \"A correct client must …\"")
	}

	goTests := map[string]bool{}
	files, _ := filepath.Glob("*_test.go")
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`(?m)^func (Test\w+)\(t \*testing\.T\)`).FindAllStringSubmatch(string(src), -1) {
			goTests[m[1]] = true
		}
	}
	tsTests := map[string][]string{} // file label ("rules") → test names
	tsName := regexp.MustCompile(`\btest\(\s*"((?:[^"\\]|\\.)*)"`)
	files, _ = filepath.Glob("ts/test/*.test.ts")
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		label := strings.TrimSuffix(filepath.Base(f), ".test.ts")
		for _, m := range tsName.FindAllStringSubmatch(string(src), -1) {
			tsTests[label] = append(tsTests[label], m[1])
		}
	}
	if len(goTests) < 20 || len(tsTests) < 2 {
		t.Fatalf("read %d Go tests and TypeScript test files %v: the layout changed?", len(goTests), tsTests)
	}

	row := regexp.MustCompile(`(?m)^\| (\d+) \| (.+) \| (.+) \| (.+) \|$`)
	rows := row.FindAllStringSubmatch(section, -1)
	if len(rows) < 20 {
		t.Fatalf("read %d checklist rows, want at least 20", len(rows))
	}
	token := regexp.MustCompile(`(\w+): |"([^"]+)"`)
	for i, r := range rows {
		num, goCell, tsCell := r[1], r[3], r[4]
		if want := strconv.Itoa(i + 1); num != want {
			t.Errorf("row %s is numbered %s", want, num)
		}
		names := regexp.MustCompile("`(Test\\w+)`").FindAllStringSubmatch(goCell, -1)
		if len(names) == 0 {
			t.Errorf("rule %s names no Go test: %q", num, goCell)
		}
		for _, n := range names {
			if !goTests[n[1]] {
				t.Errorf("rule %s: Go test %s does not exist in client/", num, n[1])
			}
		}
		// Labels and quoted names in order: each name is a test of the
		// file named by the label before it.
		found, label := 0, ""
		for _, tok := range token.FindAllStringSubmatch(tsCell, -1) {
			if tok[1] != "" {
				label = tok[1]
				if _, ok := tsTests[label]; !ok {
					t.Errorf("rule %s: client/ts/test/%s.test.ts does not exist", num, label)
				}
				continue
			}
			found++
			name, prefix := strings.CutSuffix(tok[2], "…")
			name = strings.TrimSpace(name)
			matches := 0
			for _, tn := range tsTests[label] {
				if tn == name || prefix && strings.HasPrefix(tn, name) {
					matches++
				}
			}
			if matches != 1 {
				t.Errorf("rule %s: %d tests in client/ts/test/%s.test.ts named %q, want 1", num, matches, label, tok[2])
			}
		}
		if found == 0 {
			t.Errorf("rule %s names no TypeScript test: %q", num, tsCell)
		}
	}
}
