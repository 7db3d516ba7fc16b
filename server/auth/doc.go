// Package auth turns passwords into tokens and tokens into identities.
//
// A token is an HS256 JWT naming the user (sub), the device (dev) and the
// login session (sid), with an expiry. The session lives in the database so
// that a logout revokes the token on every node. Verifying a token costs
// one point read of the session, at most once per Limits.SessionCacheTTL
// per session and node: in between the node reuses what it read. So a
// logout is exact on the node that makes it and is seen by the other nodes
// within SessionCacheTTL (the logged-out device's stream is closed across
// nodes at once, over the bus).
//
// Login and Register are bounded (Limits): per client address, per
// username (a backoff after failed logins) and per node (concurrent bcrypt
// work); a refused attempt costs neither a database read nor a bcrypt run.
// Every failed authentication is logged with its reason and the peer's
// address. Sessions that expired or were revoked are deleted in the
// background (RunSessionCollector).
//
// Accounts is safe for concurrent use.
package auth
