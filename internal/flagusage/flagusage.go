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
		dashes := "--"
		if len(f.Name) == 1 {
			dashes = "-" // -v, as people type it
		}
		b.WriteString("  " + dashes + f.Name)
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
		b.WriteString("\n        " + strings.ReplaceAll(Wrap(usage, 70), "\n", "\n        ") + "\n")
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

// Wrap breaks text into lines of at most width characters (longer words
// stay whole), at spaces; line breaks in text are kept.
func Wrap(text string, width int) string {
	var b strings.Builder
	for i, para := range strings.Split(text, "\n") {
		if i > 0 {
			b.WriteByte('\n')
		}
		n := 0
		for j, w := range strings.Fields(para) {
			l := len([]rune(w))
			switch {
			case j == 0:
			case n+1+l > width:
				b.WriteByte('\n')
				n = 0
			default:
				b.WriteByte(' ')
				n++
			}
			b.WriteString(w)
			n += l
		}
	}
	return b.String()
}
