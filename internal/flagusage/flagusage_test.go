package flagusage

import (
	"bytes"
	"flag"
	"testing"
	"time"
)

func TestPrint(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.String("data-dir", "./data", "directory of the `PATH`")
	fs.Bool("tls", false, "use TLS")
	fs.Duration("ttl", time.Hour, "lifetime")
	fs.Int("n", 0, "how many")
	fs.Bool("v", false, "verbose: a usage long enough to be wrapped at seventy characters, as it is here")
	var out bytes.Buffer
	if err := Print(&out, fs, func(name string) string {
		if name == "n" {
			return ""
		}
		return "X_" + name
	}); err != nil {
		t.Fatal(err)
	}
	want := `  --data-dir PATH  (env X_data-dir; default "./data")
        directory of the PATH
  -n int
        how many
  --tls  (env X_tls)
        use TLS
  --ttl duration  (env X_ttl; default 1h0m0s)
        lifetime
  -v  (env X_v)
        verbose: a usage long enough to be wrapped at seventy characters, as
        it is here
`
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
}

func TestWrap(t *testing.T) {
	if got := Wrap("aa bb cc\ndd", 5); got != "aa bb\ncc\ndd" {
		t.Fatalf("Wrap: %q", got)
	}
	if got := Wrap("averyverylongword x", 4); got != "averyverylongword\nx" {
		t.Fatalf("Wrap: %q", got)
	}
}
