package client

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	starlingv1 "github.com/starling-im/starling/gen/starling/v1"
)

func TestTooLarge(t *testing.T) {
	for _, tc := range []struct {
		msg        string
		got, limit int
		ok         bool
	}{
		{"grpc: received message larger than max (5000000 vs. 4194304)", 5000000, 4194304, true},
		{"grpc: message after decompression larger than max (1025 vs. 1024)", 1025, 1024, true},
		{"grpc: received message after decompression larger than max 1024", 0, 1024, true},
		{"outbound queue full: the device is not reading; reconnect and sync", 0, 0, false},
		{"larger than max", 0, 0, false},
	} {
		got, limit, ok := tooLarge(tc.msg)
		if got != tc.got || limit != tc.limit || ok != tc.ok {
			t.Errorf("tooLarge(%q) = %d, %d, %v; want %d, %d, %v", tc.msg, got, limit, ok, tc.got, tc.limit, tc.ok)
		}
	}
}

func TestClassify(t *testing.T) {
	s := &Session{}
	s.loop.init()
	tooBig := status.Error(codes.ResourceExhausted, "grpc: received message larger than max (300000 vs. 262144)")
	for _, tc := range []struct {
		err  error
		want errClass
	}{
		{io.EOF, retry},
		{errors.New("no Welcome from server within 10s"), retry},
		{fmt.Errorf("server closed the stream (DISCONNECT_REASON_SLOW): slow"), retry},
		{status.Error(codes.Unavailable, "x"), retry},
		{status.Error(codes.Canceled, "x"), retry},
		{status.Error(codes.DeadlineExceeded, "x"), retry},
		{status.Error(codes.Aborted, "x"), retry},
		{status.Error(codes.ResourceExhausted, "too many devices of this user are online"), retry},
		{status.Error(codes.Internal, "x"), retrySlow},
		{status.Error(codes.Unknown, "x"), retrySlow},
		{status.Error(codes.DataLoss, "x"), retrySlow},
		{status.Error(codes.InvalidArgument, "x"), retrySlow},
		{status.Error(codes.Unauthenticated, "x"), fatal},
		{status.Error(codes.PermissionDenied, "x"), fatal},
		{status.Error(codes.Unimplemented, "x"), fatal},
		{&DisconnectError{Reason: starlingv1.DisconnectReason_DISCONNECT_REASON_REPLACED}, fatal},
		{tooBig, fatal}, // no pending send that large: this client refused it
	} {
		if _, got := s.classify(tc.err); got != tc.want {
			t.Errorf("classify(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	if err, _ := s.classify(status.Error(codes.Unauthenticated, "x")); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("Unauthenticated classified as %v, want ErrUnauthenticated", err)
	}
	if err, _ := s.classify(tooBig); !errors.Is(err, ErrFrameTooLarge) || status.Code(err) != codes.ResourceExhausted {
		t.Errorf("too large classified as %v, want ErrFrameTooLarge with its status", err)
	}

	// With a pending send over the limit it was the server's refusal: the
	// send fails, the session reconnects.
	big := &pendingSend{frame: &starlingv1.Send{ClientMsgId: "a", Content: &starlingv1.Content{Text: strings.Repeat("x", 300000)}}, result: make(chan sendResult, 1)}
	small := &pendingSend{frame: &starlingv1.Send{ClientMsgId: "b", Content: &starlingv1.Content{Text: "hi"}}, result: make(chan sendResult, 1)}
	s.loop.pending = []*pendingSend{small, big}
	if _, got := s.classify(tooBig); got != retry {
		t.Fatalf("server-side too large classified %v, want retry", got)
	}
	s.failOversized(tooBig)
	if len(s.loop.pending) != 1 || s.loop.pending[0] != small {
		t.Fatalf("pending after failOversized: %d sends", len(s.loop.pending))
	}
	if r := <-big.result; status.Code(r.err) != codes.ResourceExhausted {
		t.Fatalf("oversized send resolved with %v", r.err)
	}
}
