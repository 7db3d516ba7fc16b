package main

import (
	"errors"
	"flag"
	"strings"

	"github.com/starling-im/starling/internal/flagusage"
)

// helpRequest is what a command returns for -h/--help (or `starling help
// <command>`): fail prints the command's help on stdout and exits 0.
type helpRequest struct {
	name string        // the command's path: "send", "group create"
	fs   *flag.FlagSet // its flags; nil for a command of commands
}

func (h *helpRequest) Error() string { return "help requested for " + h.name }

// isHelp: the words that ask for help in place of a command's arguments.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}

// helpTopic is one command's help.
type helpTopic struct {
	usage string   // its synopsis after "starling "
	about string   // what it does, and what it prints
	env   []string // environment variables it reads besides the global ones
}

// Environment variables, described once.
var envHelp = map[string]string{
	"STARLING_SERVER":     "the server's host:port, as --server",
	"STARLING_CONFIG_DIR": "where the login is kept (default: the user config dir, e.g. ~/.config/starling)",
	"STARLING_PASSWORD":   "the password, when --password is not given (else a prompt, or the first line of stdin)",
	"STARLING_ADMIN_KEY":  "the AdminService API key (required)",
	"SSL_CERT_FILE":       "with --tls and no --ca-file: a PEM file of CAs to trust instead of the system's (Go's own rule)",
}

// globalEnv is what every command reads.
var globalEnv = []string{"STARLING_SERVER", "STARLING_CONFIG_DIR"}

const adminEnv = "STARLING_ADMIN_KEY"

// groupArg says what a <group> argument is.
const groupArg = " <group> is one of your groups: its name (friends, or '#friends' quoted for the shell) or its id; a name two of your groups share needs the id (see 'starling group list -v')."

// helpTopics has one entry per command, keyed by its path (the name its
// flag set has). TestEveryCommandAnswersHelp keeps it complete.
var helpTopics = map[string]helpTopic{
	"register": {usage: "register <username> [--password P] [--display-name NAME]",
		about: "Creates an account. Prints \"registered <username> (user id <id>)\". Usernames are 3-32 of a-z, 0-9, '_', '.' and '-'; passwords 8-72 bytes.",
		env:   []string{"STARLING_PASSWORD"}},
	"login": {usage: "login <username> [--device NAME] [--password P]",
		about: "Logs in as this device and keeps the token (and the server, with its TLS settings) in the config dir for the other commands. Prints \"logged in as <username> on device <device> (until <time>)\".",
		env:   []string{"STARLING_PASSWORD"}},
	"logout": {usage: "logout", about: "Logs this device out on the server and forgets the login."},
	"whoami": {usage: "whoami [--json]", about: "Prints who is logged in, on which device and server (and checks the token with the server)."},
	"send": {usage: "send <username|group> <text…> [--json]",
		about: "Sends one message to a user, or to one of your groups; the words of the text are joined with spaces. A bare word is a username first, then the name of one of your groups, then a group id; '@bob' is always a user and '#friends' (quoted for the shell) always a group. Prints \"sent to @<username> #<seq>\" or \"sent to #<group name> #<seq>\"; --json prints the ack with the conversation id."},
	"gsend": {usage: "gsend <group> <text…> [--json]",
		about: "Sends one message to a group." + groupArg + " Prints \"sent to #<group name> #<seq>\"; --json prints the ack with the conversation id."},
	"listen": {usage: "listen [--json]",
		about: "Prints \"listening as <username> (device <device>) on <server>\" once connected, then every incoming message, event, receipt and typing notice, one line each, until interrupted (Ctrl-C); \"reconnected to <server>\" after a lost connection comes back. Messages print as \"<time> [@<username> #<seq>] <sender>: <text>\" (one-to-one) or \"<time> [#<group name> #<seq>] <sender>: <text>\" (groups). Only what is new since the last listen or chat of this device is printed."},
	"chat": {usage: "chat <username>",
		about: "Sends each line of stdin to a user and prints every incoming message, as listen does; at the end of stdin it waits for its last message to come back, then exits."},
	"history": {usage: "history <username|group> [--before SEQ] [--limit N] [--json]",
		about: "Prints a conversation's messages, oldest first: the newest --limit, or those before --before. The conversation is named as send names its recipient (a username first, then one of your groups by name, then a group id), or by its conversation id."},
	"conversations": {usage: "conversations [-v] [--json]",
		about: "Lists your conversations as @username or #group-name with their latest and delivered seq; -v adds each conversation id."},
	"inbox": {usage: "inbox [--limit N] [-v] [--json]",
		about: "Lists your conversations, newest activity first, with unread counts and the last message (✓ delivered, ✓✓ read, on your own)."},
	"read": {usage: "read <username|group> [--seq N]",
		about: "Marks a conversation read up to its newest message (or #N). The conversation is named as history names it."},

	"group": {usage: "group <command> [arguments]",
		about: "Groups: create, info, show, update, add, join, kick, leave, role, transfer, disband, members, list. 'starling group <command> --help' for one. ('groups' works as well as 'group'.)"},
	"group create": {usage: "group create <name> [usernames…] [--description TEXT] [--avatar URL] [--open] [--admins-add] [--json]",
		about: "Creates a group with you as its owner and the users named as members. Prints \"created group #<name> (<group-id>) with <n> members\": gsend and the other group commands take the name, or the id (which a name two of your groups share needs)."},
	"group show": {usage: "group show <group> [--json]", about: "Prints the group (with its id), its owner and its members." + groupArg},
	"group info": {usage: "group info <group> [--json]", about: "Prints the group's info (with its id), policies and your role." + groupArg},
	"group update": {usage: "group update <group> [--name N] [--description TEXT] [--avatar URL] [--join open|invite] [--add members|admins]",
		about: "Changes the group's info or policies (admins)." + groupArg},
	"group add":      {usage: "group add <group> <usernames…>", about: "Adds members." + groupArg},
	"group join":     {usage: "group join <group-id>", about: "Joins an open group, by its id (a group you are not in has no name to you yet)."},
	"group kick":     {usage: "group kick <group> <username>", about: "Removes a member (admins; the owner for admins). Prints \"removed <username> from #<group name>\"." + groupArg},
	"group leave":    {usage: "group leave <group>", about: "Leaves the group (the owner transfers it first)." + groupArg},
	"group role":     {usage: "group role <group> <username> admin|member", about: "Makes a member an admin or an admin a member (the owner). Prints \"<username> is now an admin of #<group name>\"." + groupArg},
	"group transfer": {usage: "group transfer <group> <username>", about: "Makes a member the owner; you become an admin." + groupArg},
	"group disband":  {usage: "group disband <group>", about: "Ends the group (the owner)." + groupArg},
	"group members":  {usage: "group members <group> [--json]", about: "Lists the members with their roles." + groupArg},
	"group list":     {usage: "group list [-v] [--json]", about: "Lists your groups: #name, size and your role; -v adds each group's id, which --json has too."},

	"friends": {usage: "friends [<command>] [arguments]",
		about: "Friends: list (the default), requests, request, accept, decline, cancel, remove. 'starling friends <command> --help' for one."},
	"friends list":     {usage: "friends list [--json]", about: "Lists your friends, online or not. 'starling friends' alone does the same."},
	"friends requests": {usage: "friends requests [--outgoing] [--json]", about: "Lists pending friend requests (default: those sent to you)."},
	"friends request":  {usage: "friends request <username> [message…]", about: "Asks a user to be friends."},
	"friends accept":   {usage: "friends accept <username>", about: "Accepts their friend request."},
	"friends decline":  {usage: "friends decline <username>", about: "Declines their friend request."},
	"friends cancel":   {usage: "friends cancel <username>", about: "Withdraws your friend request."},
	"friends remove":   {usage: "friends remove <username>", about: "Ends a friendship."},
	"block": {usage: "block <username> | block list [--json]",
		about: "Blocks a user: no messages, friend requests or presence either way. 'block list' lists whom you block."},
	"block list": {usage: "block list [--json]", about: "Lists the users you block."},
	"unblock":    {usage: "unblock <username>", about: "Lifts a block."},

	"admin": {usage: "admin [--cert FILE --key FILE] <command> [arguments]",
		about: "Calls the server's AdminService with the API key in STARLING_ADMIN_KEY, or the client certificate of --cert and --key (PEM, over TLS; the server's --admin-client-ca), for backends and operators; each answer prints as one line of JSON. Commands: users, token, revoke, send, broadcast, groups, presence. 'starling admin <command> --help' for one.",
		env:   []string{adminEnv}},
	"admin users": {usage: "admin users upsert|disable|enable|delete …",
		about: "Creates or updates a user by external id, disables, enables or deletes one.", env: []string{adminEnv}},
	"admin users upsert": {usage: "admin users upsert <external-id> <username> [--display-name NAME]",
		about: "Creates the user of an external id, or updates it.", env: []string{adminEnv}},
	"admin users disable": {usage: "admin users disable <user-id>", about: "Disables a user: logged out, and refused until enabled.", env: []string{adminEnv}},
	"admin users enable":  {usage: "admin users enable <user-id>", about: "Enables a disabled user.", env: []string{adminEnv}},
	"admin users delete":  {usage: "admin users delete <user-id>", about: "Deletes a user.", env: []string{adminEnv}},
	"admin token":         {usage: "admin token <user-id> <device>", about: "Issues a token for a user's device.", env: []string{adminEnv}},
	"admin revoke":        {usage: "admin revoke <user-id> [device]", about: "Revokes a user's tokens (of one device, or all).", env: []string{adminEnv}},
	"admin send": {usage: "admin send [--from USER-ID] (--to USER-ID | --group GROUP-ID) --id CLIENT-MSG-ID <text…>",
		about: "Sends a message as a user or the system sender.", env: []string{adminEnv}},
	"admin broadcast": {usage: "admin broadcast --id CLIENT-MSG-ID --to USER-ID,USER-ID… <text…>",
		about: "Sends one message from the system sender to each user listed.", env: []string{adminEnv}},
	"admin groups": {usage: "admin groups create|set …", about: "Creates a group or sets its members.", env: []string{adminEnv}},
	"admin groups create": {usage: "admin groups create <owner-id> <name> [member-id[:admin]…]",
		about: "Creates a group owned by a user; members given as ID:admin are admins.", env: []string{adminEnv}},
	"admin groups set": {usage: "admin groups set <group-id> <user-id[:member|:admin|:owner]…>",
		about: "Makes these users the group's members (the owner stays), with the roles given (a plain id keeps its role; :owner moves ownership).", env: []string{adminEnv}},
	"admin presence": {usage: "admin presence <user-ids…>", about: "Prints whether each user is online.", env: []string{adminEnv}},
}

// globalFlags defines the flags that come before the command.
func globalFlags(fs *flag.FlagSet, a *app) {
	fs.StringVar(&a.server, "server", "", "the server's `HOST:PORT` (default: the server logged in to, else "+defaultServer+")")
	fs.BoolVar(&a.tls, "tls", false, "connect with TLS, trusting the system's CAs (implied by --ca-file and --server-name)")
	fs.StringVar(&a.caFile, "ca-file", "", "`PATH` of a PEM file of the CA(s) to trust for the server's certificate, in place of the system's: a private CA or a self-signed certificate (implies --tls)")
	fs.StringVar(&a.serverName, "server-name", "", "the `NAME` the server's certificate must be for, when it is not the host of --server (implies --tls)")
}

// globalEnvOf names the environment variable a global flag reads.
func globalEnvOf(name string) string {
	if name == "server" {
		return "STARLING_SERVER"
	}
	return ""
}

// helpText is a command's help: usage line, what it does, its flags, the
// global flags and the environment variables it reads.
func helpText(h *helpRequest) string {
	topic, ok := helpTopics[h.name]
	if !ok {
		topic = helpTopic{usage: h.name + " …"}
	}
	var b strings.Builder
	b.WriteString("usage: starling [global flags] " + topic.usage + "\n")
	if topic.about != "" {
		b.WriteString("\n" + flagusage.Wrap(topic.about, 76) + "\n")
	}
	if h.fs != nil {
		n := 0
		h.fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			b.WriteString("\nFlags:\n")
			flagusage.Print(&b, h.fs, nil)
		}
	}
	b.WriteString("\nGlobal flags (before the command):\n")
	gfs := flag.NewFlagSet("starling", flag.ContinueOnError)
	globalFlags(gfs, &app{})
	flagusage.Print(&b, gfs, globalEnvOf)
	b.WriteString("\nEnvironment:\n")
	env := append(append([]string{}, globalEnv...), topic.env...)
	if !strings.HasPrefix(h.name, "admin") {
		env = append(env, "SSL_CERT_FILE")
	}
	for _, e := range env {
		b.WriteString("  " + e + strings.Repeat(" ", max(1, 21-len(e))) + envHelp[e] + "\n")
	}
	return b.String()
}

// subcommand runs one of a command of commands' subcommands: args[0] names
// it; none, or help, asks for the command's own help.
func subcommand(name string, table map[string]command, args []string, run func(command, []string) error) error {
	if len(args) == 0 {
		return usageErrorf("%s: missing command (see 'starling %s --help')", name, name)
	}
	if isHelp(args[0]) {
		if len(args) > 1 { // `starling group help create`
			return subcommand(name, table, append(args[1:2], "--help"), run)
		}
		return &helpRequest{name: name}
	}
	cmd, ok := table[args[0]]
	if !ok {
		return usageErrorf("%s: unknown command %q (see 'starling %s --help')", name, args[0], name)
	}
	return run(cmd, args[1:])
}

// asHelp reports whether err asks for help.
func asHelp(err error) (*helpRequest, bool) {
	var h *helpRequest
	return h, errors.As(err, &h)
}
