package server

import (
	"runtime"
	"time"

	"github.com/starling-im/starling/server/auth"
)

// DefaultAuthLimits returns the production bounds on Login and Register,
// and the session cache of token checks
// (see auth.Limits; starlingd has a flag for each):
//
//   - per client address: 1 login attempt a second (bursts of 20) and one
//     registration every 20 s (bursts of 10);
//   - per username: 5 failed logins in 15 minutes are free; then each
//     further attempt waits 1 s, 2 s, 4 s, … up to 15 minutes after the
//     last failure, and a success resets it;
//   - per node: bcrypt on at most half the CPUs at once (at least one); a
//     login or registration waits up to 2 s for a turn, then is refused
//     UNAVAILABLE;
//   - 100,000 addresses and usernames remembered per limiter;
//   - token checks reuse a session read for 5 s (at most 100,000 sessions
//     remembered): a logout through another node of a cluster is refused
//     here within 5 s, one through this node at once.
//
// The per-address limits see the gRPC peer: behind a proxy, the proxy.
func DefaultAuthLimits() auth.Limits {
	return auth.Limits{
		LoginRate:       1,
		LoginBurst:      20,
		RegisterRate:    0.05,
		RegisterBurst:   10,
		FailedLogins:    5,
		FailureWindow:   15 * time.Minute,
		LoginBackoff:    time.Second,
		MaxLoginBackoff: 15 * time.Minute,
		MaxBcrypt:       max(1, runtime.GOMAXPROCS(0)/2),
		BcryptWait:      2 * time.Second,
		SessionCacheTTL: 5 * time.Second,
		MaxTracked:      100_000,
	}
}
