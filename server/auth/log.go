package auth

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/starling-im/starling/server/apierr"
)

// authLog writes one info line per failed authentication: what was tried
// (login, register, token), why it failed, the username or user id when
// known, and the peer's address. Never the password or the token.
//
// A flood of failures must not become a flood of log lines, so the lines
// are themselves rate limited (logLinesPerSecond, bursts of logBurst); the
// first line after a quiet spell says how many were left out.
type authLog struct {
	log        *slog.Logger
	lines      *rate.Limiter
	suppressed atomic.Int64

	countsMu sync.Mutex
	counts   map[AuthResult]int64
}

// AuthResult is one kind of authentication outcome: the operation (login,
// register, token) and its result ("ok", or why it failed, a fixed text).
type AuthResult struct{ Op, Result string }

// count records one outcome. Every outcome is counted, logged or not.
func (l *authLog) count(op, result string) {
	l.countsMu.Lock()
	defer l.countsMu.Unlock()
	if l.counts == nil {
		l.counts = make(map[AuthResult]int64)
	}
	l.counts[AuthResult{op, result}]++
}

// reasonOf is a failure's reason as a fixed text: the message of its
// apierr entry (never the detail around it, which can name a session).
func reasonOf(err error) string {
	var ae *apierr.Error
	if errors.As(err, &ae) {
		return ae.Message
	}
	return "error"
}

const (
	logLinesPerSecond = 20
	logBurst          = 100
)

func newAuthLog(l *slog.Logger) *authLog {
	return &authLog{log: l, lines: rate.NewLimiter(logLinesPerSecond, logBurst)}
}

// failed logs a failed authentication. user is a username (login,
// register) or user id (token), "" when unknown; addr is the peer's
// address, "" to take it from ctx.
func (l *authLog) failed(ctx context.Context, op, reason, user, addr string) {
	l.count(op, reason)
	if !l.log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	if !l.lines.AllowN(time.Now(), 1) {
		l.suppressed.Add(1)
		return
	}
	if addr == "" {
		_, addr = clientOf(ctx)
	}
	attrs := []any{"op", op, "reason", reason, "peer", addr}
	if user != "" {
		if op == "token" {
			attrs = append(attrs, "user_id", user)
		} else if usernameRE.MatchString(user) {
			attrs = append(attrs, "username", user)
		} else {
			// Not a possible username: perhaps a password typed in the
			// wrong field. Not logged.
			attrs = append(attrs, "username", "(invalid)")
		}
	}
	if n := l.suppressed.Swap(0); n > 0 {
		attrs = append(attrs, "suppressed", n)
	}
	l.log.InfoContext(ctx, "authentication failed", attrs...)
}
