// Package apierr holds the error kinds that cross from Starling's domain
// packages to the API edge. Domain code wraps one of them with a message
// meant for the client (fmt.Errorf("%w: content is %d bytes", ErrInvalidArgument, n));
// the gateway maps the kind to a gRPC code in one table and shows the message.
// Errors that wrap none of these (nor a storage sentinel) are internal: the
// client sees only "internal error".
package apierr

import "errors"

// Kinds of failure a client can be told about.
var (
	ErrInvalidArgument   = errors.New("invalid argument")
	ErrUnauthenticated   = errors.New("unauthenticated")
	ErrPermissionDenied  = errors.New("permission denied")
	ErrNotFound          = errors.New("not found")
	ErrAlreadyExists     = errors.New("already exists")
	ErrResourceExhausted = errors.New("resource exhausted")
	ErrUnavailable       = errors.New("unavailable")
)
