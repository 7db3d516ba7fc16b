// Package hub holds the live device sessions of one node and decides, per
// device, whether a new message is pushed or announced with a Notify.
//
// Sessions are kept in shards keyed by user, so fan-out to one busy user
// never locks the others. Each session has one bounded outbound queue,
// drained by the stream's single writer goroutine; enqueueing never blocks:
// a device whose queue is full is disconnected (it resyncs on reconnect),
// so a slow reader can never stall the send pipeline.
//
// Per device the hub tracks, for each conversation, the highest seq sent
// and acknowledged. While the pushed-but-unacknowledged count is under the
// window, messages are pushed; when it is full, the conversation switches to
// pull mode: one Notify is sent and pushes for it stop until the device has
// synced to the end (SyncDone), which is how a busy group cannot flood a
// phone (docs/design.md, delivery invariant 5).
//
// The Hub takes what the bus hands its node: each committed message with
// the node's recipients (Deliver) and the sending stream's bus.DeviceKey,
// which it skips (Session.Key is that key), announcements, and kicks of
// devices logged out or replaced on another node. Resync re-reads what
// every session is behind on, for deliveries the bus may have lost.
//
// Everything here is safe for concurrent use.
package hub
