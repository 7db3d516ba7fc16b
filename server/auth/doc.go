// Package auth turns passwords into tokens and tokens into identities.
//
// A token is an HS256 JWT naming the user (sub), the device (dev) and the
// login session (sid), with an expiry. The session lives in the database so
// that a logout revokes the token on every node at once; verifying a token
// therefore costs one point read, which keeps revocation exact rather than
// eventually consistent.
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
