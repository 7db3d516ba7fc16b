package gateway

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/starling-im/starling/server/apierr"
)

// toStatus turns a domain error into the status a client sees: the code and
// fixed message of the apierr entry it wraps (the detail around it goes to
// the log, at debug: refusals are routine). Anything else is a bug: it is
// logged and becomes a bare Internal, so no internal detail leaks.
func toStatus(log *slog.Logger, err error) *status.Status {
	if err == nil {
		return nil
	}
	var ae *apierr.Error
	switch {
	case errors.As(err, &ae):
		log.Debug("refused", "code", ae.Code.String(), "err", err)
		return status.New(ae.Code, ae.Message)
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, "canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, "deadline exceeded")
	}
	if s, ok := status.FromError(err); ok {
		// A status from gRPC itself (the stream broke): pass it on.
		return s
	}
	log.Error("internal error", "err", err)
	return status.New(codes.Internal, apierr.Internal.Message)
}

func toError(log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	return toStatus(log, err).Err()
}

// ToError is toStatus for the interceptors outside this package.
func ToError(log *slog.Logger, err error) error { return toError(log, err) }
