package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/term"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func cmdRegister(ctx context.Context, a *app, args []string) error {
	fs := newFlags("register")
	pw := fs.String("password", "", "password (else STARLING_PASSWORD, else prompt)")
	display := fs.String("display-name", "", "name shown to others")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	password, err := a.password(*pw, true)
	if err != nil {
		return err
	}
	cl, err := a.dial(nil, "")
	if err != nil {
		return err
	}
	defer cl.Close()
	u, err := cl.Register(ctx, pos[0], password, *display)
	if err != nil {
		return err
	}
	return say(a.stdout, "registered %s (user id %s)\n", u.GetUsername(), u.GetUserId())
}

func cmdLogin(ctx context.Context, a *app, args []string) error {
	fs := newFlags("login")
	pw := fs.String("password", "", "password (else STARLING_PASSWORD, else prompt)")
	device := fs.String("device", defaultDevice(), "this device's name")
	pos, err := parse(fs, args, 1, 1)
	if err != nil {
		return err
	}
	password, err := a.password(*pw, false)
	if err != nil {
		return err
	}
	cl, err := a.dial(nil, "")
	if err != nil {
		return err
	}
	defer cl.Close()
	resp, err := cl.Login(ctx, pos[0], password, *device)
	if err != nil {
		return err
	}
	send, err := cl.Login(ctx, pos[0], password, sendDevice(*device))
	if err != nil {
		return err
	}
	e := a.target(nil)
	if e.caFile != "" {
		// Later commands may run in another directory.
		if e.caFile, err = filepath.Abs(e.caFile); err != nil {
			return fmt.Errorf("--ca-file: %w", err)
		}
	}
	c := &config{
		Server:     e.addr,
		TLS:        e.tls,
		CAFile:     e.caFile,
		ServerName: e.serverName,
		UserID:     resp.GetUser().GetUserId(),
		Username:   resp.GetUser().GetUsername(),
		DeviceID:   resp.GetDeviceId(),
		Token:      resp.GetToken(),
		Expires:    resp.GetExpiresAt().AsTime(),
		SendToken:  send.GetToken(),
	}
	if err := a.saveConfig(c); err != nil {
		return err
	}
	return say(a.stdout, "logged in as %s on device %s (until %s)\n",
		c.Username, c.DeviceID, c.Expires.Local().Format(time.DateTime))
}

func cmdLogout(ctx context.Context, a *app, args []string) error {
	if _, err := parse(newFlags("logout"), args, 0, 0); err != nil {
		return err
	}
	c, err := a.loadConfig()
	if err != nil {
		return err
	}
	for _, token := range []string{c.Token, c.SendToken} {
		if token == "" {
			continue
		}
		cl, err := a.dial(c, token)
		if err != nil {
			return err
		}
		err = cl.Logout(ctx)
		cl.Close()
		// A token the server no longer takes is as good as logged out;
		// anything else (server down) keeps the login to try again.
		if err != nil && status.Code(err) != codes.Unauthenticated {
			return err
		}
	}
	if err := a.removeConfig(); err != nil {
		return err
	}
	return say(a.stdout, "logged out %s from device %s\n", c.Username, c.DeviceID)
}

func cmdWhoami(ctx context.Context, a *app, args []string) error {
	fs := newFlags("whoami")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(fs, args, 0, 0); err != nil {
		return err
	}
	c, cl, err := a.loggedIn()
	if err != nil {
		return err
	}
	defer cl.Close()
	// Ask the server, so an expired or revoked token shows up here.
	if _, err := cl.GetUser(ctx, c.UserID); err != nil {
		return err
	}
	addr := a.target(c).addr
	if *asJSON {
		return writeJSON(a.stdout, map[string]any{
			"user_id": c.UserID, "username": c.Username, "device_id": c.DeviceID,
			"server": addr, "expires_at": c.Expires,
		})
	}
	return say(a.stdout, "%s (user id %s) on device %s at %s\n", c.Username, c.UserID, c.DeviceID, addr)
}

// password comes from the flag, STARLING_PASSWORD, a prompt on a terminal,
// or else the first line of stdin (for scripts).
func (a *app) password(fromFlag string, confirm bool) (string, error) {
	if fromFlag != "" {
		return fromFlag, nil
	}
	if p := os.Getenv("STARLING_PASSWORD"); p != "" {
		return p, nil
	}
	if f, ok := a.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p, err := a.prompt(f, "Password: ")
		if err != nil || !confirm {
			return p, err
		}
		again, err := a.prompt(f, "Again: ")
		if err != nil {
			return "", err
		}
		if again != p {
			return "", errors.New("the passwords differ")
		}
		return p, nil
	}
	line, _ := bufio.NewReader(a.stdin).ReadString('\n')
	if line = strings.TrimRight(line, "\r\n"); line == "" {
		return "", errors.New("no password: use --password, STARLING_PASSWORD, or a line on stdin")
	}
	return line, nil
}

func (a *app) prompt(f *os.File, label string) (string, error) {
	say(a.stderr, "%s", label)
	b, err := term.ReadPassword(int(f.Fd()))
	say(a.stderr, "\n")
	if err != nil {
		return "", fmt.Errorf("reading password: %w", err)
	}
	return string(b), nil
}

// defaultDevice names this machine's device: "cli-<hostname>", in the
// characters device ids allow.
func defaultDevice() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "host"
	}
	host = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
			return r
		}
		return '-'
	}, host)
	return "cli-" + host[:min(len(host), 40)]
}

// sendDevice is the device name of the send token (see config.SendToken),
// kept within the 64 characters a device id may have.
func sendDevice(device string) string {
	return device[:min(len(device), 59)] + ".send"
}
