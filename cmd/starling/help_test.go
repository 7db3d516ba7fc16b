package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// Every command answers -h, --help and `starling help <command>` with its
// usage line, its flags, the global flags and the environment variables it
// reads, on stdout, exit 0.
func TestEveryCommandAnswersHelp(t *testing.T) {
	t.Setenv("STARLING_CONFIG_DIR", t.TempDir())
	flags := map[string][]string{
		"register":      {"--password", "--display-name"},
		"login":         {"--password", "--device"},
		"logout":        nil,
		"whoami":        {"--json"},
		"send":          {"--json"},
		"gsend":         {"--json"},
		"listen":        {"--json"},
		"chat":          nil,
		"history":       {"--before", "--limit", "--json"},
		"conversations": {"-v", "--json"},
		"inbox":         {"--limit", "-v", "--json"},
		"read":          {"--seq"},

		"group":          nil,
		"group create":   {"--description", "--avatar", "--open", "--admins-add", "--json"},
		"group show":     {"--json"},
		"group info":     {"--json"},
		"group update":   {"--name", "--description", "--avatar", "--join", "--add"},
		"group add":      nil,
		"group join":     nil,
		"group kick":     nil,
		"group leave":    nil,
		"group role":     nil,
		"group transfer": nil,
		"group disband":  nil,
		"group members":  {"--json"},
		"group list":     {"-v", "--json"},

		"friends":          nil,
		"friends list":     {"--json"},
		"friends requests": {"--outgoing", "--json"},
		"friends request":  nil,
		"friends accept":   nil,
		"friends decline":  nil,
		"friends cancel":   nil,
		"friends remove":   nil,
		"block":            nil,
		"block list":       {"--json"},
		"unblock":          nil,

		"admin":               nil,
		"admin users":         nil,
		"admin users upsert":  {"--display-name"},
		"admin users disable": nil,
		"admin users enable":  nil,
		"admin users delete":  nil,
		"admin token":         nil,
		"admin revoke":        nil,
		"admin send":          {"--from", "--to", "--group", "--id"},
		"admin broadcast":     {"--to", "--id"},
		"admin groups":        nil,
		"admin groups create": nil,
		"admin groups set":    nil,
		"admin presence":      nil,
	}
	for name := range helpTopics {
		if _, ok := flags[name]; !ok {
			t.Errorf("help topic %q is not in this test", name)
		}
	}
	// Every command the program dispatches has a topic.
	for prefix, table := range map[string]map[string]command{"": commands, "group ": groupCommands, "friends ": friendCommands,
		"admin ": adminCommands, "admin users ": adminUserCommands, "admin groups ": adminGroupCommands} {
		for name := range table {
			if name == "groups" {
				continue // an alias of group
			}
			if _, ok := helpTopics[prefix+name]; !ok {
				t.Errorf("command %q has no help topic", prefix+name)
			}
		}
	}

	for name, want := range flags {
		words := strings.Fields(name)
		for _, args := range [][]string{
			append(slices.Clone(words), "--help"),
			append(slices.Clone(words), "-h"),
			append([]string{"help"}, words...),
		} {
			var out, errOut bytes.Buffer
			code := run(t.Context(), args, strings.NewReader(""), &out, &errOut)
			help := out.String()
			if code != 0 || errOut.Len() != 0 || !strings.HasPrefix(help, "usage: starling [global flags] "+name) {
				t.Errorf("starling %s: exit %d, stderr %q, stdout:\n%s", strings.Join(args, " "), code, errOut.String(), help)
				continue
			}
			for _, f := range append(want, "--server", "--tls", "--ca-file", "--server-name", "STARLING_SERVER", "STARLING_CONFIG_DIR") {
				if !strings.Contains(help, "  "+f) {
					t.Errorf("starling %s does not show %s:\n%s", strings.Join(args, " "), f, help)
				}
			}
			if (name == "register" || name == "login") && !strings.Contains(help, "STARLING_PASSWORD") ||
				strings.HasPrefix(name, "admin") && !strings.Contains(help, "STARLING_ADMIN_KEY") {
				t.Errorf("starling %s does not name its environment variable:\n%s", strings.Join(args, " "), help)
			}
		}
	}

	// The program's own usage.
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		var out, errOut bytes.Buffer
		if code := run(t.Context(), args, strings.NewReader(""), &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "usage: starling") ||
			!strings.Contains(out.String(), "STARLING_PASSWORD") || !strings.Contains(out.String(), "--ca-file") {
			t.Errorf("starling %s: exit %d, stdout %q, stderr %q", args, code, out.String(), errOut.String())
		}
	}
}

// Bad usage: exit 2 and one line on stderr that points to the right help.
func TestBadUsagePointsToHelp(t *testing.T) {
	u := newUser(t, nil)
	u.t.Setenv("STARLING_CONFIG_DIR", u.dir)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, "see 'starling --help'"},
		{[]string{"--frob", "send"}, "see 'starling --help'"},
		{[]string{"help", "frobnicate"}, "see 'starling --help'"},
		{[]string{"send", "bob"}, "missing arguments (see 'starling send --help')"},
		{[]string{"send", "--frob", "bob", "x"}, "see 'starling send --help'"},
		{[]string{"whoami", "extra"}, "too many arguments (see 'starling whoami --help')"},
		{[]string{"group"}, "see 'starling group --help'"},
		{[]string{"group", "rename"}, "unknown command \"rename\" (see 'starling group --help')"},
		{[]string{"group", "role", "g", "bob", "king"}, "see 'starling group role --help'"},
		{[]string{"friends", "hug"}, "see 'starling friends --help'"},
		{[]string{"admin"}, "see 'starling admin --help'"},
		{[]string{"admin", "users"}, "see 'starling admin users --help'"},
		{[]string{"admin", "groups", "merge"}, "see 'starling admin groups --help'"},
		{[]string{"history", "bob", "--limit", "0"}, "see 'starling history --help'"},
	} {
		var out, errOut bytes.Buffer
		code := run(t.Context(), tc.args, strings.NewReader(""), &out, &errOut)
		if code != 2 || out.Len() != 0 || strings.Count(errOut.String(), "\n") != 1 || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("starling %s: exit %d, stdout %q, stderr %q; want exit 2 and one line with %q", strings.Join(tc.args, " "), code, out.String(), errOut.String(), tc.want)
		}
	}
}
