// Package chat is Starling's logic layer: it validates and authorizes every
// chat operation, stores messages through the send pipeline, and fans them
// out once they are committed, through a Router (server/bus: presence says
// which nodes hold the recipients, the bus hands each node its share; chat
// never sees a hub session, only the sending stream's bus.DeviceKey).
//
// The send pipeline (pipeline.go) is where throughput comes from: sends are
// grouped by conversation into shards; each shard commits whatever queued
// while its previous transaction ran as ONE transaction (group commit), so
// at low load a send costs one commit and under load many sends share one.
// Fan-out and the SendAck happen strictly after the commit, in seq order per
// conversation (docs/design.md, delivery invariant 1).
//
// Service is safe for concurrent use.
package chat
