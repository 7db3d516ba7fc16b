// Package textsafe names the characters that change how the text around
// them is shown rather than showing themselves: control characters and the
// Unicode bidirectional-formatting characters. Sent to a terminal they can
// move the cursor, erase or overwrite a line (\r, ESC [2K), or reorder what
// follows (U+202E RIGHT-TO-LEFT OVERRIDE), so text from other people can
// forge output around it.
//
// It lives with the client library because showing text to a person is a
// client's job: an app or the CLI escapes them in everything it prints.
// The server uses the same definition to refuse them in the names it
// shows to others (display names, group names). It imports nothing of
// Starling's.
package textsafe

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Unsafe reports whether r is one of:
//   - a C0 control, U+0000–U+001F (incl. \t, \n, \r, ESC), or DEL, U+007F;
//   - a C1 control, U+0080–U+009F (U+009B is an 8-bit CSI);
//   - a bidirectional-formatting character: the marks U+200E, U+200F and
//     U+061C, the embeddings and overrides U+202A–U+202E, the isolates
//     U+2066–U+2069;
//   - the line and paragraph separators U+2028 and U+2029.
func Unsafe(r rune) bool {
	switch {
	case r < 0x20, r >= 0x7f && r <= 0x9f:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f,
		r >= 0x2028 && r <= 0x202e,
		r >= 0x2066 && r <= 0x2069:
		return true
	}
	return false
}

// ContainsUnsafe reports whether s holds an Unsafe character.
func ContainsUnsafe(s string) bool {
	return strings.ContainsFunc(s, Unsafe)
}

// Escape returns s with every Unsafe character, and every byte that is not
// valid UTF-8, replaced by a visible escape: \n, \r and \t as such, other
// characters below U+0080 and invalid bytes as \xNN, the others as \uNNNN.
// The result holds no Unsafe character, so it prints on one line and
// cannot move the cursor or reorder text. Everything else, backslashes
// included, is kept as it is: the escapes are for a person to read, not to
// be parsed back.
func Escape(s string) string {
	if !strings.ContainsFunc(s, Unsafe) && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x80 && Unsafe(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case Unsafe(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}
