package main

import (
	"bytes"
	"os"
	"regexp"
	"slices"
	"testing"
)

// docs/operations.md lists exactly starlingd's flags, each with its
// environment variable: the operator's reference cannot fall behind.
func TestOperationsDocListsEveryFlag(t *testing.T) {
	var help, errOut bytes.Buffer
	if code := realMain(t.Context(), []string{"--help"}, func(string) string { return "" }, &help, &errOut); code != 0 {
		t.Fatalf("--help: exit %d: %s", code, errOut.String())
	}
	var flags []string
	for _, m := range regexp.MustCompile(`(?m)^  --([a-z0-9-]+)`).FindAllStringSubmatch(help.String(), -1) {
		flags = append(flags, m[1])
	}
	if len(flags) < 10 {
		t.Fatalf("read only %d flags from --help:\n%s", len(flags), help.String())
	}

	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, m := range regexp.MustCompile("(?m)^\\| `--([a-z0-9-]+)` \\| `STARLING_([A-Z0-9_]+)` \\|").FindAllStringSubmatch(string(doc), -1) {
		documented = append(documented, m[1])
		if want := envName(m[1]); "STARLING_"+m[2] != want {
			t.Errorf("--%s is documented with STARLING_%s, want %s", m[1], m[2], want)
		}
	}
	slices.Sort(flags)
	slices.Sort(documented)
	for _, f := range flags {
		if !slices.Contains(documented, f) {
			t.Errorf("--%s is not in docs/operations.md's flag table", f)
		}
	}
	for _, f := range documented {
		if !slices.Contains(flags, f) {
			t.Errorf("docs/operations.md documents --%s, which starlingd does not have", f)
		}
	}
}
