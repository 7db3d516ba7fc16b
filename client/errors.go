package client

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

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
	// ErrFrameTooLarge: the server sent a frame larger than the client's
	// receive limit (WithMaxRecvBytes). A reconnect would be sent the same
	// frame, so the session ends. The error also carries gRPC's status, so
	// status.Code(err) is codes.ResourceExhausted.
	ErrFrameTooLarge = errors.New("starling: a frame from the server is larger than the client's receive limit")
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

// How a session reacts to an error that ended a stream or a reconnect.
type errClass int

const (
	// retry: reconnect with the usual backoff (WithBackoff).
	retry errClass = iota
	// retrySlow: reconnect, but every attempt waits the longest backoff;
	// for failures a reconnect cures only if the server changes (a bug on
	// its side, a proxy answering oddly).
	retrySlow
	// fatal: end the session with the error; a reconnect with the same
	// token and the same client cannot help.
	fatal
)

// classify decides what an error from opening or reading the stream, a
// fatal Error frame or a Disconnect means for the session, and returns it
// in the form Session.Err reports (package documentation, "Which stream
// errors are retried"). An error that is no gRPC status (the server closed
// the stream, no Welcome in time) is a broken connection: retry.
func (s *Session) classify(err error) (error, errClass) {
	if errors.Is(err, ErrUnauthenticated) || errors.Is(err, ErrDisconnected) || errors.Is(err, ErrFrameTooLarge) {
		return err, fatal
	}
	st, ok := status.FromError(err)
	if !ok {
		return err, retry
	}
	switch st.Code() {
	case codes.Unauthenticated:
		return &authError{st: st}, fatal
	case codes.PermissionDenied, codes.Unimplemented:
		// The server refuses this device the stream, or is not a
		// Starling server: it will answer the same next time.
		return err, fatal
	case codes.ResourceExhausted:
		if got, limit, ok := tooLarge(st.Message()); ok && s.receivedTooLarge(limit) {
			// This client refused a frame from the server as larger than
			// its receive limit. The server sends the same frame again
			// after a reconnect (the same backlog), so retrying spins.
			return &tooLargeError{st: st, size: got, limit: limit}, fatal
		}
		// The server cut a slow device, refused a frame of ours as too
		// large (see failOversized), or has too many of the user's
		// devices online: all may pass.
		return err, retry
	case codes.Unavailable, codes.Canceled, codes.DeadlineExceeded, codes.Aborted:
		return err, retry
	default:
		// Internal, Unknown, DataLoss and codes the server never ends a
		// stream with: a bug (ours or the server's) or something between
		// us. gRPC also reports an HTTP/2 stream reset (by a proxy, say)
		// as Internal, so the session does not give up, but it does not
		// hammer the server either.
		return err, retrySlow
	}
}

// tooLarge parses gRPC's "received message larger than max (N vs. LIMIT)"
// (and its decompression variants, which may give only LIMIT; got is then
// 0). ok is false for any other message.
func tooLarge(msg string) (got, limit int, ok bool) {
	_, rest, found := strings.Cut(msg, "larger than max")
	if !found {
		return 0, 0, false
	}
	rest = strings.TrimSpace(rest)
	if _, err := fmt.Sscanf(rest, "(%d vs. %d)", &got, &limit); err == nil {
		return got, limit, true
	}
	if _, err := fmt.Sscanf(rest, "%d", &limit); err == nil {
		return 0, limit, true
	}
	return 0, 0, false
}

// receivedTooLarge tells which side refused a message larger than limit.
// gRPC words it the same on both sides, but the server can only have
// refused a frame of ours if one was larger than limit, and the only big
// frames a session writes are its sends, which stay pending until
// answered; small Syncs, acks and pings never are. So: the server's
// refusal if a pending send is larger than limit, this client's otherwise.
func (s *Session) receivedTooLarge(limit int) bool {
	return !slices.ContainsFunc(s.loop.pending, func(p *pendingSend) bool { return frameSize(p) > limit })
}

// frameSize is the encoded size of p's Send frame, with the largest ref.
func frameSize(p *pendingSend) int {
	return proto.Size(&starlingv1.StreamRequest{Ref: math.MaxUint64, Frame: &starlingv1.StreamRequest_Send{Send: p.frame}})
}

// failOversized answers, with a ResourceExhausted error, the pending sends
// too large for the server's limit when err says the server refused a
// frame as larger than that (classify: not this client's refusal).
// Resending them would only break the next stream the same way.
func (s *Session) failOversized(err error) {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.ResourceExhausted {
		return
	}
	_, limit, ok := tooLarge(st.Message())
	if !ok {
		return
	}
	s.loop.pending = slices.DeleteFunc(s.loop.pending, func(p *pendingSend) bool {
		n := frameSize(p)
		if n <= limit {
			return false
		}
		p.resolve(nil, status.Errorf(codes.ResourceExhausted, "message too large: the Send frame is %d bytes, the server accepts %d", n, limit))
		return true
	})
}

// tooLargeError ends a session whose client refused a frame from the
// server as larger than its receive limit (WithMaxRecvBytes). It matches
// ErrFrameTooLarge and keeps gRPC's ResourceExhausted status.
type tooLargeError struct {
	st          *status.Status
	size, limit int
}

func (e *tooLargeError) Error() string {
	if e.size > 0 {
		return fmt.Sprintf("%v (%d bytes, limit %d; see WithMaxRecvBytes)", ErrFrameTooLarge, e.size, e.limit)
	}
	return fmt.Sprintf("%v (limit %d; see WithMaxRecvBytes)", ErrFrameTooLarge, e.limit)
}

func (e *tooLargeError) Is(target error) bool       { return target == ErrFrameTooLarge }
func (e *tooLargeError) GRPCStatus() *status.Status { return e.st }

// streamError gives an Unauthenticated status from opening the stream the
// authError form Open returns; anything else is returned as is.
func streamError(err error) error {
	if st, ok := status.FromError(err); ok && st.Code() == codes.Unauthenticated {
		return &authError{st: st}
	}
	return err
}
