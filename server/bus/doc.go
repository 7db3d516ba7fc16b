// Package bus carries committed messages from the send pipeline to the node
// that holds each recipient's device.
//
// chat hands every committed message to a Router. The Router asks presence
// (a Locator) on which nodes the recipients' devices are, and publishes one
// Delivery per node on the Bus, with that node's recipients: a message
// crosses to a node once, whatever the number of its recipients there, and
// its encoding (wire.Shared) is made once per message for every node and
// every device. Each node subscribes a Handler (its hub, and its member
// cache for group changes) to what is published to it. The Router also
// closes a logged-out device's stream wherever it is (Kick), tells every
// node when a group's membership changed, and owes an Announce to a node
// it could not publish to, retried for a minute.
//
// Local is the in-process Bus of a single node: Publish calls the
// subscriber of the node directly, on the publisher's goroutine, so the
// single-node hot path has no extra hop and keeps the order in which the
// pipeline publishes (a conversation's messages in seq order). Redis is
// the Bus across nodes, on Redis pub/sub (one channel per node, at most
// once; see its comment for what a lost or reordered delivery costs); a
// node's own deliveries skip Redis there too.
//
// Local, Redis and Router are safe for concurrent use. A Handler is called on the
// publisher's goroutine (Local) or the bus's receiving goroutine; it must
// not block.
package bus
