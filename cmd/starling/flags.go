package main

import (
	"errors"
	"flag"
	"io"
)

// newFlags returns a flag set for one command; errors come back from parse.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parse parses flags anywhere among args and returns the positional
// arguments. The flag package stops at the first positional argument, but
// people type `starling login alice --device phone`. "--" ends the flags.
func parse(fs *flag.FlagSet, args []string, minPos, maxPos int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, &helpRequest{name: fs.Name(), fs: fs}
			}
			return nil, usageErrorf("%s: %v (see 'starling %s --help')", fs.Name(), err, fs.Name())
		}
		rest := fs.Args()
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	switch {
	case len(pos) < minPos:
		return nil, usageErrorf("%s: missing arguments (see 'starling %s --help')", fs.Name(), fs.Name())
	case maxPos >= 0 && len(pos) > maxPos:
		return nil, usageErrorf("%s: too many arguments (see 'starling %s --help')", fs.Name(), fs.Name())
	}
	return pos, nil
}
