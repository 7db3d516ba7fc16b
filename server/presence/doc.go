// Package presence knows which node holds which device: user → devices →
// node. The gateway registers a device's stream once the hub has taken it
// (and before the catch-up read, docs/design.md invariant 2) and
// unregisters it when the stream ends; the bus Router asks Locate where a
// message's recipients are.
//
// Local is the in-process Presence of one node. With one node, every
// online device is on it, so Locate answers "all on this node" without a
// lookup per user: the hub skips users with no device at the cost it
// always had. Devices registered on other nodes (tests run several nodes
// in one process) are tracked and located exactly.
//
// Redis is the Presence of a cluster. In Redis (under a key prefix):
//
//	pres:u:{<user>}   hash  device → "node|session|version"   who holds each device now
//	pres:n:{<node>}   hash  user NUL device → "session|version" a node's streams
//	pres:nodes        zset  node → heartbeat expiry (unix ms)  which nodes are live
//	pres:events       channel: a stream registered or ended, a node left
//
// Registering a stream is one script on the user's hash (a single key, so
// any Redis Cluster slot): it stamps the stream with a version from Redis's
// clock, higher than the one it replaces. The node holding the replaced
// stream hears the event and closes it (REPLACED): a device is online on
// one node at a time, the newer stream winning. Unregistering deletes the
// entry only if it is still the stream's (compare and delete).
//
// Locate reads a replica of every node's streams kept in memory, so fan-out
// costs no Redis call per message or per recipient: Redis work per message
// is the bus's, one PUBLISH per node with recipients. The replica follows
// the events and is rebuilt from the node hashes every ResyncInterval,
// whenever the set of live nodes changes, and after the event subscription
// broke; events heard during a rebuild are applied again on top.
//
// Each node heartbeats its expiry into pres:nodes every TTL/3. A node killed
// with kill -9 stops; the others stop routing to it within TTL + TTL/3
// (13 s by default), and one of them removes its streams from the users'
// hashes 30 s later. A node that finds its heartbeat was forgotten (Redis
// restarted or was flushed, or it was taken for dead) writes its streams
// back, has its devices re-read what they are behind on (OnLost), and tells
// the others to rebuild. Redis down is never fatal: Register keeps the
// stream locally and the heartbeat writes it when Redis answers.
//
// Local and Redis are safe for concurrent use.
package presence
