package gateway

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/starling-im/starling/server/apierr"
	"github.com/starling-im/starling/storage"
)

// codeTable maps error kinds to gRPC codes. The first match wins.
var codeTable = []struct {
	err  error
	code codes.Code
}{
	{apierr.ErrInvalidArgument, codes.InvalidArgument},
	{apierr.ErrUnauthenticated, codes.Unauthenticated},
	{apierr.ErrPermissionDenied, codes.PermissionDenied},
	{apierr.ErrNotFound, codes.NotFound},
	{storage.ErrNotFound, codes.NotFound},
	{apierr.ErrAlreadyExists, codes.AlreadyExists},
	{storage.ErrAlreadyExists, codes.AlreadyExists},
	{apierr.ErrResourceExhausted, codes.ResourceExhausted},
	{storage.ErrGroupFull, codes.ResourceExhausted},
	{apierr.ErrUnavailable, codes.Unavailable},
	// The commit may or may not have happened: the client resends with the
	// same client_msg_id, and dedup makes that safe.
	{storage.ErrAmbiguousCommit, codes.Unavailable},
	{context.Canceled, codes.Canceled},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
}

// toStatus turns a domain error into the status a client sees. Known kinds
// keep their message (domain messages are written for clients); anything
// else is logged and becomes a bare Internal, so no internal detail leaks.
func toStatus(log *slog.Logger, err error) *status.Status {
	if err == nil {
		return nil
	}
	if s, ok := status.FromError(err); ok {
		return s
	}
	for _, e := range codeTable {
		if errors.Is(err, e.err) {
			return status.New(e.code, err.Error())
		}
	}
	log.Error("internal error", "err", err)
	return status.New(codes.Internal, "internal error")
}

func toError(log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	return toStatus(log, err).Err()
}
