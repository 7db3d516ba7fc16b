package server_test

import (
	"slices"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/starling-im/starling/server"
	"github.com/starling-im/starling/server/servertest"
)

// With a TracerProvider, a send has one span from its frame to its answer,
// with the commit and fan-out as events, and its batch's commit span links
// back to it; RPCs have spans of their own.
func TestSendIsTraced(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(t.Context())
	srv := servertest.Start(t, servertest.WithConfig(func(c *server.Config) { c.TracerProvider = tp }))
	aliceU, bobU := srv.NewUser(t, "alice"), srv.NewUser(t, "bob")
	alice := connect(t, srv, aliceU, "phone")
	expectAck(t, alice, alice.Text(t, bobU.ID, "", "traced", "hi"))

	var send, commit sdktrace.ReadOnlySpan
	names := map[string]bool{}
	for _, s := range rec.Ended() {
		names[s.Name()] = true
		switch s.Name() {
		case "starling.send":
			send = s
		case "starling.commit":
			commit = s
		}
	}
	if send == nil || commit == nil {
		t.Fatalf("spans %v, want starling.send and starling.commit", names)
	}
	var events []string
	for _, e := range send.Events() {
		events = append(events, e.Name)
	}
	if !slices.Equal(events, []string{"committing", "committed", "fanned out"}) {
		t.Fatalf("send events %v", events)
	}
	if len(commit.Links()) != 1 || commit.Links()[0].SpanContext.SpanID() != send.SpanContext().SpanID() {
		t.Fatalf("commit span links %v, want the send span", commit.Links())
	}
	if !names["starling.v1.AuthService/Register"] {
		t.Fatalf("no RPC span among %v", names)
	}
}
