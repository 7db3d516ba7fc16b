package main

import (
	"bytes"
	"context"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/starling-im/starling/client/textsafe"
	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
	"github.com/starling-im/starling/server/servertest"
)

// hostile is a message that, printed raw, erases its own line (\r, ESC [2K)
// and shows a forged one from "admin" instead, then a second forged line,
// reversed by a bidi override, with an 8-bit CSI and a DEL.
const hostile = "ok\r\x1b[2K2025-01-01 10:00:00 [@admin #1] admin: please reply with your password" +
	"\n2025-01-01 10:00:01 [@admin #2] admin: \u202edrowssap\u202c\u009b2K\x7f\tend"

// oneSafeLine fails unless out is exactly one line without a character that
// could control the terminal.
func oneSafeLine(t *testing.T, what, out string) string {
	t.Helper()
	line, ok := strings.CutSuffix(out, "\n")
	if !ok || strings.Contains(line, "\n") || textsafe.ContainsUnsafe(line) {
		t.Fatalf("%s printed %q; want one line without control or bidi characters", what, out)
	}
	return line
}

// The forged-line attack: a message with \r, ESC [2K, a bidi override and a
// fake "[@admin #1]" prefix prints as one line, its controls visible.
func TestHostileMessageText(t *testing.T) {
	srv := servertest.Start(t)
	alice, bob := signup(t, srv, "alice"), signup(t, srv, "bob")
	alice.ok("send", "bob", hostile)

	line := oneSafeLine(t, "history", bob.ok("history", "alice"))
	want := `[@alice #1] alice: ok\r\x1b[2K2025-01-01 10:00:00 [@admin #1] admin: please reply with your password` +
		`\n2025-01-01 10:00:01 [@admin #2] admin: \u202edrowssap\u202c\u009b2K\x7f\tend`
	if !strings.HasSuffix(line, want) {
		t.Fatalf("history printed\n%s\nwant it to end with\n%s", line, want)
	}

	// listen prints it the same way.
	l := bob.listen(t)
	l.waitText(t, "tend\n")
	l.stop(t)
	_, msg, _ := strings.Cut(l.stdout.String(), "\n") // after "listening as …"
	if got := oneSafeLine(t, "listen", msg); !strings.HasSuffix(got, want) {
		t.Fatalf("listen printed\n%s\nwant it to end with\n%s", got, want)
	}

	// --json: the exact text for scripts, and nothing raw for a terminal.
	out := bob.ok("history", "alice", "--json")
	oneSafeLine(t, "history --json", out)
	if msgs := jsonLines(t, out); len(msgs) != 1 || msgs[0]["text"] != hostile {
		t.Fatalf("history --json: %v", msgs)
	}

	// The server refuses such characters in the names it shows to others.
	alice.fails(1, "display name", "register", "mallory", "--password", pw, "--display-name", "admin\u202e")
	alice.fails(1, "group name", "group", "create", "ok\r\x1b[2Kadmins", "bob")
}

// Names, ids, types and error messages are escaped as well as the text.
func TestHostileNamesAndErrors(t *testing.T) {
	var out bytes.Buffer
	p := newPrinter(&out, nil, &config{UserID: "u1", Username: "me"}, false)
	p.names["u\x1b[2K2"] = "ad\rmin\u2066"
	p.groups["g\n1"] = "fr\x1b[2Kiends\u202e"
	err := p.message(context.Background(), &starlingv1.Message{
		ConversationId: "grp:g\n1",
		Seq:            3,
		SenderId:       "u\x1b[2K2",
		Content:        &starlingv1.Content{Type: "img\u009b", Data: []byte("\x1b\r\n"), Text: "cap\ntion"},
		ServerTime:     timestamppb.Now(),
	})
	if err != nil {
		t.Fatal(err)
	}
	line := oneSafeLine(t, "message", out.String())
	if !strings.HasSuffix(line, `[#fr\x1b[2Kiends\u202e #3] ad\rmin\u2066: <img\u009b, 3 bytes> cap\ntion`) {
		t.Fatalf("message printed %q", line)
	}

	// An error message from the server (or a proxy in front of it).
	var errOut bytes.Buffer
	a := &app{stderr: &errOut}
	if code := a.fail(status.Error(codes.Internal, "boom\r\x1b[2Kstarling: log in again\n")); code != 1 {
		t.Fatalf("exit %d", code)
	}
	if line := oneSafeLine(t, "fail", errOut.String()); line != `starling: boom\r\x1b[2Kstarling: log in again\n` {
		t.Fatalf("fail printed %q", line)
	}

	// say escapes every kind of text argument.
	out.Reset()
	type name string
	say(&out, "%s %s %v %v %d\n", name("a\rb"), []string{"c\x1bd"}, errorString("e\u202ef"), struct{ S string }{"g\nh"}, 7)
	if got := oneSafeLine(t, "say", out.String()); got != `a\rb [c\x1bd] e\u202ef {g\nh} 7` {
		t.Fatalf("say printed %q", got)
	}

	// writeJSON: what encoding/json leaves raw (DEL, C1, bidi) is escaped,
	// and the value reads back the same.
	out.Reset()
	v := map[string]string{"text": "a\x7fb\u0085c\u202ed\u2069e\u200ef\x1b"}
	if err := writeJSON(&out, v); err != nil {
		t.Fatal(err)
	}
	oneSafeLine(t, "writeJSON", out.String())
	var back map[string]string
	if err := json.Unmarshal(out.Bytes(), &back); err != nil || back["text"] != v["text"] {
		t.Fatalf("writeJSON wrote %q: read back %q, %v", out.String(), back, err)
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

// TestOutputOnlyThroughSay keeps every output path escaped: outside
// output.go nothing prints with fmt or io directly.
func TestOutputOnlyThroughSay(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	forbidden := map[string]bool{
		"fmt.Print": true, "fmt.Printf": true, "fmt.Println": true,
		"fmt.Fprint": true, "fmt.Fprintf": true, "fmt.Fprintln": true,
		"io.WriteString": true, "io.Copy": true,
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if name == "output.go" || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if pkg, ok := sel.X.(*ast.Ident); ok {
				full := pkg.Name + "." + sel.Sel.Name
				stdio := full == "os.Stdout" || full == "os.Stderr"
				if forbidden[full] || stdio && name != "main.go" { // main hands them to run
					t.Errorf("%s: %s: print through say or writeJSON (output.go), which escape control characters", fset.Position(sel.Pos()), full)
				}
			}
			return true
		})
	}
}
