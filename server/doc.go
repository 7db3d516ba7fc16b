// Package server assembles a Starling node: the gRPC server with its
// interceptor chain (recovery, metrics, logging, auth), health and
// reflection, and the layers behind the handlers (gateway → chat → hub,
// storage). It sees the database only through storage.Store; cmd/starlingd
// picks the backend.
package server
