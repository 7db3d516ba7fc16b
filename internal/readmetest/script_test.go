package readmetest

import (
	"bufio"
	"fmt"
	"regexp"
	"strings"
)

// The README marks the code blocks this test runs with an HTML comment
// (invisible on GitHub) on the line before the fence:
//
//	<!-- readme-test: terminal bob -->
//	```sh
//	export STARLING_CONFIG_DIR=/tmp/bob STARLING_PASSWORD='correct horse battery'
//	./bin/starling login bob --device phone
//	# → logged in as bob on device phone (until …)
//	./bin/starling listen
//	# → listening as bob (device phone) on 127.0.0.1:7070
//	```
//
// Blocks with the same terminal name run in one shell, in README order,
// so what one block exports the next block of that terminal has. Inside a
// block:
//
//   - A line not starting with '#' is a command; a trailing '\' or a
//     here-document (<<WORD … WORD) continues it on the next lines.
//   - "# → PATTERN" lines after a command are its output (stdout and
//     stderr, as a terminal shows them), line by line and in order. In a
//     pattern "…" stands for any text; a pattern that is only "…" stands
//     for any number of lines; spaces stand for any run of spaces and
//     tabs. A command with patterns must print exactly
//     that; a command without any must print nothing but may be a set-up
//     line (export, X=$(…), a here-document). "# → (exit status N)" says
//     the command fails with status N (else it must exit 0).
//   - "./bin/starlingd …" and "… listen" are long-running: they run in the
//     background of their terminal, and their "# → " lines are waited for
//     (in any order: a listen prints catch-up conversations in any order,
//     and presence events between) rather than matched whole.
//   - "# NAME's terminal → PATTERN" is a line NAME's background command
//     prints after the commands before it (waited for, as above).
//   - "# Ctrl-C …" stops this terminal's background command (SIGINT) and
//     checks that it exits 0.
//   - "make build" and "go build …" lines are checked against the builds
//     this test does itself (buildCommands), not run.
//   - Any other '#' line is prose for the reader.

// marker is the comment before a block this test runs.
var marker = regexp.MustCompile(`^<!-- readme-test: terminal ([a-z0-9-]+) -->$`)

// expectPrefix starts an output pattern; watchPattern is an output line of
// another terminal's background command.
const expectPrefix = "# → "

var (
	watchPattern = regexp.MustCompile(`^# ([a-z0-9-]+)'s terminal → (.*)$`)
	exitPattern  = regexp.MustCompile(`^\(exit status (\d+)\)$`)
	heredoc      = regexp.MustCompile(`<<-?\s*['"]?([A-Za-z_]+)['"]?`)
	// background: the commands that run until stopped.
	background = regexp.MustCompile(`^(\w+=\S+\s+)*\./bin/starlingd(\s|$)|\slisten$`)
)

type stepKind int

const (
	runStep   stepKind = iota // a command that ends by itself
	bgStep                    // a command that runs until Ctrl-C
	watchStep                 // a line another terminal's background command prints
	stopStep                  // Ctrl-C
	buildStep                 // a build line (checked, not run)
)

// step is one thing the README has the reader do in a terminal.
type step struct {
	line   int // in README.md, for failures
	kind   stepKind
	cmd    string   // runStep, bgStep, buildStep
	expect []string // patterns: runStep, bgStep (one), watchStep (one)
	exit   int      // runStep: the exit status the README says
	target string   // watchStep: the terminal whose background command prints it
}

// block is one marked code block.
type block struct {
	terminal string
	line     int
	steps    []step
}

// parseREADME returns the marked blocks of the README, in order.
func parseREADME(text string) ([]block, error) {
	var blocks []block
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		m := marker.FindStringSubmatch(strings.TrimSpace(lines[i]))
		if m == nil {
			continue
		}
		if i+1 >= len(lines) || strings.TrimSpace(lines[i+1]) != "```sh" {
			return nil, fmt.Errorf("README.md:%d: a readme-test marker must come right before a ```sh block", i+1)
		}
		start := i + 2
		end := start
		for end < len(lines) && strings.TrimSpace(lines[end]) != "```" {
			end++
		}
		if end == len(lines) {
			return nil, fmt.Errorf("README.md:%d: the block never ends", i+1)
		}
		steps, err := parseBlock(lines[start:end], start+1)
		if err != nil {
			return nil, err
		}
		blocks = append(blocks, block{terminal: m[1], line: i + 1, steps: steps})
		i = end
	}
	return blocks, nil
}

// parseBlock turns a block's lines (the first is README line first) into
// steps.
func parseBlock(lines []string, first int) ([]step, error) {
	var steps []step
	// last is the command the next "# → " line belongs to (-1: none).
	last := -1
	for i := 0; i < len(lines); i++ {
		line, n := lines[i], first+i
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "":
			continue
		case strings.HasPrefix(trimmed, expectPrefix), trimmed == strings.TrimSpace(expectPrefix):
			if last < 0 {
				return nil, fmt.Errorf("README.md:%d: output with no command before it", n)
			}
			pat := strings.TrimPrefix(trimmed, strings.TrimSpace(expectPrefix))
			pat = strings.TrimPrefix(pat, " ")
			s := &steps[last]
			if m := exitPattern.FindStringSubmatch(pat); m != nil && s.kind == runStep {
				fmt.Sscan(m[1], &s.exit)
				continue
			}
			if s.kind == bgStep {
				// The background command's lines are waited for one by one.
				steps = append(steps, step{line: n, kind: watchStep, expect: []string{pat}})
				continue
			}
			s.expect = append(s.expect, pat)
		case watchPattern.MatchString(trimmed):
			m := watchPattern.FindStringSubmatch(trimmed)
			steps = append(steps, step{line: n, kind: watchStep, target: m[1], expect: []string{m[2]}})
		case strings.HasPrefix(trimmed, "# Ctrl-C"):
			steps = append(steps, step{line: n, kind: stopStep})
			last = -1
		case strings.HasPrefix(trimmed, "#"):
			// Prose. It ends the output of the command before it only if
			// another command follows; "# → " lines stay with their command.
		default:
			cmd := []string{line}
			// Continuations: a trailing backslash, or a here-document.
			for strings.HasSuffix(cmd[len(cmd)-1], `\`) && i+1 < len(lines) {
				i++
				cmd = append(cmd, lines[i])
			}
			if m := heredoc.FindStringSubmatch(line); m != nil {
				for i++; i < len(lines) && strings.TrimSpace(lines[i]) != m[1]; i++ {
					cmd = append(cmd, lines[i])
				}
				if i == len(lines) {
					return nil, fmt.Errorf("README.md:%d: the here-document never ends (%s)", n, m[1])
				}
				cmd = append(cmd, lines[i])
			}
			text := strings.Join(cmd, "\n")
			kind := runStep
			switch {
			case isBuild(text):
				kind = buildStep
			case background.MatchString(withoutComment(text)):
				kind = bgStep
			}
			steps = append(steps, step{line: n, kind: kind, cmd: text})
			last = len(steps) - 1
		}
	}
	return steps, nil
}

// buildCommands are the build lines the README may show: the test builds
// the same binaries itself (see build), faster than a second `go build`.
var buildCommands = map[string]bool{
	"make build":                 true,
	"go build -o bin/ ./cmd/...": true,
	"go build -modfile=tools.mod -o bin/ github.com/fullstorydev/grpcurl/cmd/grpcurl": true,
}

func isBuild(cmd string) bool {
	c := withoutComment(cmd)
	return strings.HasPrefix(c, "make build") || strings.HasPrefix(c, "go build ")
}

// withoutComment is a one-line command without its trailing "# …".
func withoutComment(cmd string) string {
	if i := strings.Index(cmd, " #"); i >= 0 && !strings.Contains(cmd, "\n") {
		cmd = cmd[:i]
	}
	return strings.TrimSpace(cmd)
}

// linePattern compiles one output pattern: "…" is any text, and a run of
// spaces is any run of spaces and tabs (columns are padded or
// tab-separated; the README aligns them as it reads best).
func linePattern(p string) *regexp.Regexp {
	parts := strings.Split(p, "…")
	for i, s := range parts {
		parts[i] = spaces.ReplaceAllLiteralString(regexp.QuoteMeta(s), `[ \t]+`)
	}
	return regexp.MustCompile(`^` + strings.Join(parts, `.*`) + `$`)
}

var spaces = regexp.MustCompile(` +`)

// matchLines reports whether out is exactly what patterns say: line by
// line, a pattern "…" standing for any number of lines.
func matchLines(patterns, out []string) bool {
	if len(patterns) == 0 {
		return len(out) == 0
	}
	if patterns[0] == "…" {
		for skip := 0; skip <= len(out); skip++ {
			if matchLines(patterns[1:], out[skip:]) {
				return true
			}
		}
		return false
	}
	return len(out) > 0 && linePattern(patterns[0]).MatchString(out[0]) && matchLines(patterns[1:], out[1:])
}

// outputLines splits a command's output into lines.
func outputLines(out string) []string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}
