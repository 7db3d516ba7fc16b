// Package presence knows which node holds which device: user → devices →
// node. The gateway registers a device's stream once the hub has taken it
// (and before the catch-up read, docs/design.md invariant 2) and
// unregisters it when the stream ends; the bus Router asks Locate where a
// message's recipients are.
//
// Local is the in-process Presence. With one node, every online device is
// on it, so Locate answers "all on this node" without a lookup per user:
// the hub skips users with no device at the cost it always had. Devices
// registered on other nodes (tests run several nodes in one process) are
// tracked and located exactly. A Presence shared by nodes (Redis, planned)
// plugs in behind the same interface.
//
// Local is safe for concurrent use.
package presence
