package client

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

// Sentinel errors a caller can test with errors.Is. See the package
// documentation for where each one shows up.
var (
	// ErrClosed: the Session or Client was closed by Close.
	ErrClosed = errors.New("starling: closed")
	// ErrUnauthenticated: the server refused the token (unknown, expired,
	// revoked or garbled). The error also carries the server's gRPC status,
	// so status.Code(err) is codes.Unauthenticated.
	ErrUnauthenticated = errors.New("starling: unauthenticated")
	// ErrDisconnected: the server closed the stream and told the client not
	// to reconnect. Every *DisconnectError matches it.
	ErrDisconnected = errors.New("starling: disconnected by server")
	// ErrLoggedOut: this device logged out (Logout frame or the unary
	// AuthService.Logout); its token no longer works.
	ErrLoggedOut = errors.New("starling: logged out")
	// ErrReplaced: a newer stream of the same device replaced this one.
	ErrReplaced = errors.New("starling: replaced by a newer stream of this device")
)

// DisconnectError is why a Session ended when the server sent a Disconnect
// frame with reconnect=false. It matches ErrDisconnected, and ErrLoggedOut
// or ErrReplaced according to Reason.
type DisconnectError struct {
	// Reason is the server's reason code.
	Reason starlingv1.DisconnectReason
	// Message is the server's explanation, for people.
	Message string
}

func (e *DisconnectError) Error() string {
	var msg string
	switch e.Reason {
	case starlingv1.DisconnectReason_DISCONNECT_REASON_LOGGED_OUT:
		msg = ErrLoggedOut.Error()
	case starlingv1.DisconnectReason_DISCONNECT_REASON_REPLACED:
		msg = ErrReplaced.Error()
	default:
		msg = ErrDisconnected.Error() + " (" + e.Reason.String() + ")"
	}
	if e.Message != "" && !strings.Contains(msg, e.Message) {
		msg += ": " + e.Message
	}
	return msg
}

// Is makes errors.Is(err, ErrLoggedOut) and friends work on the reason code.
func (e *DisconnectError) Is(target error) bool {
	switch target {
	case ErrDisconnected:
		return true
	case ErrLoggedOut:
		return e.Reason == starlingv1.DisconnectReason_DISCONNECT_REASON_LOGGED_OUT
	case ErrReplaced:
		return e.Reason == starlingv1.DisconnectReason_DISCONNECT_REASON_REPLACED
	}
	return false
}

// authError is an authentication failure: errors.Is(err, ErrUnauthenticated)
// holds and status.Code(err) is still the server's code, so callers can use
// either idiom.
type authError struct{ st *status.Status }

func (e *authError) Error() string {
	return fmt.Sprintf("%v: %s", ErrUnauthenticated, e.st.Message())
}

func (e *authError) Is(target error) bool       { return target == ErrUnauthenticated }
func (e *authError) GRPCStatus() *status.Status { return e.st }

// frameError turns an Error frame into a gRPC status error, so that errors
// from the stream and from unary calls look the same to callers; an
// Unauthenticated one also matches ErrUnauthenticated.
func frameError(e *starlingv1.Error) error {
	st := status.New(codes.Code(e.GetCode()), e.GetMessage())
	if st.Code() == codes.Unauthenticated {
		return &authError{st: st}
	}
	return st.Err()
}

// streamError classifies an error from opening or reading the stream:
// Unauthenticated becomes an authError, anything else is returned as is.
func streamError(err error) error {
	if st, ok := status.FromError(err); ok && st.Code() == codes.Unauthenticated {
		return &authError{st: st}
	}
	return err
}

// permanent reports whether a session must end instead of reconnecting:
// retrying with the same token cannot help.
func permanent(err error) bool {
	return errors.Is(err, ErrUnauthenticated) || errors.Is(err, ErrDisconnected)
}
