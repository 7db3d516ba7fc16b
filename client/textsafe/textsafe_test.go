package textsafe

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestUnsafe(t *testing.T) {
	for _, r := range []rune{0, '\t', '\n', '\r', 0x1b, 0x1f, 0x7f, 0x80, 0x85, 0x9b, 0x9f,
		0x061c, 0x200e, 0x200f, 0x2028, 0x2029, 0x202a, 0x202e, 0x2066, 0x2069} {
		if !Unsafe(r) {
			t.Errorf("U+%04X is not unsafe", r)
		}
	}
	for _, r := range []rune{' ', 'a', '~', '\\', 0xa0, 0xe9, 0x200b, 0x200d, 0x202f, 0x2065, 0x206a, 0xfffd, 0x1f600} {
		if Unsafe(r) {
			t.Errorf("U+%04X is unsafe", r)
		}
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"":                           "",
		"plain text, déjà vu 🙂":      "plain text, déjà vu 🙂",
		`C:\dir`:                     `C:\dir`,
		"a\nb\r\tc":                  `a\nb\r\tc`,
		"\x1b[2K\x1b]0;title\x07":    `\x1b[2K\x1b]0;title\x07`,
		"\x00\x7f":                   `\x00\x7f`,
		"\u009b31m":                  `\u009b31m`,
		"abc\u202edcba\u2066x\u2069": `abc\u202edcba\u2066x\u2069`,
		"\u200e\u200f\u061c":         `\u200e\u200f\u061c`,
		"bad \xff\xfe utf-8":         `bad \xff\xfe utf-8`,
		"\u2028":                     `\u2028`,
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzEscape: the result is valid UTF-8 without an unsafe character, and
// safe text comes back unchanged.
func FuzzEscape(f *testing.F) {
	for _, s := range []string{"hi", "a\r\x1b[2Kb", "\u202e", "\xff", "\u009b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := Escape(s)
		if ContainsUnsafe(e) || !utf8.ValidString(e) {
			t.Fatalf("Escape(%q) = %q", s, e)
		}
		if utf8.ValidString(s) && !ContainsUnsafe(s) && e != s {
			t.Fatalf("Escape(%q) = %q, want it unchanged", s, e)
		}
		if strings.Count(e, "\\") < strings.Count(s, "\\") {
			t.Fatalf("Escape(%q) = %q lost a backslash", s, e)
		}
	})
}
