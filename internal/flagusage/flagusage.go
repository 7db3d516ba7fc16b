// Package flagusage prints a flag set the way Starling's programs show
// their --help: GNU-style "--name VALUE", the environment variable each flag
// also reads, and its default, so one screen answers "how do I set this?".
// starlingd, starling and starling-bench share it so their help reads alike.
package flagusage

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// Print writes every flag of fs, sorted by name:
//
//	--data-dir PATH  (env STARLING_DATA_DIR; default "./data")
//	      directory of the embedded SQLite database
//
// env names the environment variable a flag reads ("" for none); it may be
// nil.
func Print(w io.Writer, fs *flag.FlagSet, env func(name string) string) error {
	var b strings.Builder
	fs.VisitAll(func(f *flag.Flag) {
		kind, usage := flag.UnquoteUsage(f)
		b.WriteString("  --" + f.Name)
		if kind != "" {
			b.WriteString(" " + kind)
		}
		var notes []string
		if env != nil {
			if e := env(f.Name); e != "" {
				notes = append(notes, "env "+e)
			}
		}
		if d := Default(f); d != "" {
			notes = append(notes, "default "+d)
		}
		if len(notes) > 0 {
			b.WriteString("  (" + strings.Join(notes, "; ") + ")")
		}
		b.WriteString("\n        " + strings.ReplaceAll(usage, "\n", "\n        ") + "\n")
	})
	_, err := io.WriteString(w, b.String())
	return err
}

// Default is a flag's default as help shows it: "" when it is the zero
// value (nothing worth saying), quoted for strings.
func Default(f *flag.Flag) string {
	switch f.DefValue {
	case "", "0", "false", "0s":
		return ""
	}
	if g, ok := f.Value.(flag.Getter); ok {
		if _, isString := g.Get().(string); isString {
			return fmt.Sprintf("%q", f.DefValue)
		}
	}
	return f.DefValue
}
