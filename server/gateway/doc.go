// Package gateway is Starling's gRPC edge: the handlers of every service.
// Each handler checks its request, makes one call into the domain (auth,
// chat, hub) and maps the error to a status code (errors.go). The Stream
// handler and the frame dispatch live in stream.go: look there for how each
// frame is handled.
package gateway
