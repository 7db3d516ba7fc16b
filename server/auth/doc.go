// Package auth turns passwords into tokens and tokens into identities.
//
// A token is an HS256 JWT naming the user (sub), the device (dev) and the
// login session (sid), with an expiry. The session lives in the database so
// that a logout revokes the token on every node at once; verifying a token
// therefore costs one point read, which keeps revocation exact rather than
// eventually consistent.
//
// Accounts is safe for concurrent use.
package auth
