package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/redis/go-redis/v9"

	"github.com/starling-im/starling/server/admin"
	"github.com/starling-im/starling/server/auth"
	"github.com/starling-im/starling/server/bus"
	"github.com/starling-im/starling/server/chat"
	"github.com/starling-im/starling/server/presence"
	"github.com/starling-im/starling/server/push"
	"github.com/starling-im/starling/server/readstate"
)

// Config is everything a node needs besides its store. DefaultConfig gives
// the values starlingd uses; each bound here is one the design asks for.
type Config struct {
	NodeID string // announced in Welcome and logs
	// NodeLeaseTTL is the length of the lease on the node's number (the
	// node bits of message ids), leased from the database at Serve and
	// renewed every third of it (server/nodelease). 0: 15 s.
	NodeLeaseTTL time.Duration
	// SingleNode makes Serve refuse to start while another node holds a
	// live lease on the database (one node per database until cluster
	// mode). starlingd sets it.
	SingleNode bool
	// Presence records which node holds each device, and Bus carries
	// committed messages to those nodes; nil: the in-process versions for
	// one node (presence.Local, bus.Local). A node serves one Bus
	// subscription for NodeID.
	Presence presence.Presence
	Bus      bus.Bus
	// Redis, when set (and Presence and Bus are nil), makes the node one
	// of a cluster: presence and the bus are Redis's (presence.Redis,
	// bus.Redis), under RedisPrefix.
	Redis       redis.UniversalClient
	RedisPrefix string
	// PresenceTTL is how long a node that stopped heartbeating (killed) is
	// still routed to; its devices reconnect elsewhere meanwhile. Other
	// nodes notice within PresenceTTL + PresenceTTL/3. 0: 10 s.
	PresenceTTL time.Duration
	// ResyncInterval is how often every stream of the node re-reads what
	// it is behind on, and the presence replica is rebuilt: the safety
	// net for deliveries the bus lost. 0: never (one node loses none).
	ResyncInterval time.Duration
	// RecheckAfter is when a new stream reads what it is behind on a
	// second time (gateway.ChatServer.RecheckAfter). 0: never.
	RecheckAfter time.Duration

	// AdminKeys are the API keys that open AdminService (server/admin);
	// nil: none does. Keys.Load may replace them while the node serves.
	AdminKeys *admin.Keys
	// AdminClientCAs, when set, let TLS client certificates they signed
	// open AdminService as the key entry whose cert_cn the certificate
	// names (admin.Key.CertCN). The node's TLS config must request client
	// certificates without requiring them (tls.RequestClientCert):
	// devices have none. A certificate never opens a user service.
	// CAs.Set may replace them while the node serves.
	AdminClientCAs *admin.CAs
	// PushWebhook, when set, receives offline notifications (a message to
	// a user with no device online), coalesced per user over PushWindow
	// (0: 2 s), with a text preview when PushPreview; nil: they are only
	// logged (server/push).
	PushWebhook *push.WebhookConfig
	PushWindow  time.Duration
	PushPreview bool
	// PushMuter, when set, replaces the users' own mutes (SetMute, read
	// from the store) in deciding which conversations do not push.
	PushMuter push.Muter
	// EventWebhook, when set, receives the events of EventTypes
	// (push.EventTypes), signed like the push webhook.
	EventWebhook *push.WebhookConfig
	EventTypes   []string

	TokenSecret []byte        // HS256 key, at least 32 bytes, the same on every node
	TokenTTL    time.Duration // token lifetime
	BcryptCost  int           // 0: bcrypt.DefaultCost
	// AuthLimits bound Login and Register: per client address and per
	// username, and the bcrypt work of the whole node; and how long token
	// checks reuse a session read (auth.Limits).
	AuthLimits auth.Limits
	// Sessions that expired or were revoked are deleted every
	// SessionGCInterval, SessionGCBatch per transaction (0: never).
	SessionGCInterval time.Duration
	SessionGCBatch    int

	HeartbeatInterval time.Duration // announced in Welcome; 3 silent intervals close a stream
	AuthTimeout       time.Duration // wait for the Auth frame

	MaxFrameBytes    int // largest gRPC message accepted
	MaxContentBytes  int // largest encoded Content
	MaxGroupMembers  int // members per group
	MaxDevices       int // devices of one user online on one node
	MaxInflightSends int // sends of one stream awaiting SendAck
	Window           int // unacked pushes per device before Notify
	QueueSize        int // outbound frames per device before it is cut as slow
	// MaxResponseBytes bounds the messages of one Push, SyncBatch or
	// history page by encoded size; has_more (or the next Push) carries
	// the rest. Well under gRPC's default 4 MiB receive limit.
	MaxResponseBytes int
	// WriteTimeout is how long an ending stream may stay blocked writing to
	// a device that does not read before its connection is closed.
	WriteTimeout time.Duration
	// MaxQueueBytes bounds what is queued for one device in encoded bytes
	// (QueueSize bounds it in frames); past it the device is cut as slow.
	MaxQueueBytes int

	// Connections. A device needs one Stream plus a few unary calls at a
	// time; the rest bound what a connection that misbehaves can hold.
	MaxConcurrentStreams  uint32        // streams open at once on one connection
	MaxUnauthStreams      int           // streams on the node waiting for their Auth frame
	ConnectionTimeout     time.Duration // a new connection must finish its TLS/HTTP/2 handshake within this
	MaxConnectionIdle     time.Duration // a connection with no RPC open for this long is closed
	MaxConnectionAge      time.Duration // connections are told to go away after this (0: never), so load rebalances after deploys
	MaxConnectionAgeGrace time.Duration // after MaxConnectionAge, open RPCs get this long before the connection is cut
	SendRate              rate.Limit    // messages/s per user (0: unlimited)
	SendBurst             int
	// DMPolicy says who may send one-to-one messages: anyone (the
	// default), or friends only. Blocks hold under both.
	DMPolicy chat.DMPolicy

	SendShards          int           // parallel commit pipelines
	MaxBatch            int           // messages per commit
	BatchLinger         time.Duration // under load, how long a commit waits to fill
	CursorFlushInterval time.Duration // how often acked cursors are written
	// ReadFlushInterval is how often read and delivered positions
	// (MarkRead, PushAck) are written, and receipts sent: the coalescing
	// window of receipts, and what a crash may lose of them.
	ReadFlushInterval time.Duration

	// Registerer receives the gRPC and hub metrics; nil: no metrics.
	Registerer prometheus.Registerer
	// TracerProvider, if set, traces every RPC (otelgrpc) and every send
	// (validate → commit, with its batch → fan-out). nil: tracing off.
	TracerProvider trace.TracerProvider
}

// ClusterDefaults sets what a node of a cluster needs on top of
// DefaultConfig: redis, its key prefix, and the safety nets for
// deliveries lost between nodes.
func (c *Config) ClusterDefaults(r redis.UniversalClient, prefix string) {
	c.Redis, c.RedisPrefix = r, prefix
	c.SingleNode = false
	if c.ResyncInterval == 0 {
		c.ResyncInterval = time.Minute
	}
	if c.RecheckAfter == 0 {
		c.RecheckAfter = 2 * time.Second
	}
}

// DefaultConfig returns production defaults for a single node.
func DefaultConfig() Config {
	return Config{
		NodeID:                "starling-0",
		NodeLeaseTTL:          15 * time.Second,
		TokenTTL:              30 * 24 * time.Hour,
		HeartbeatInterval:     30 * time.Second,
		AuthTimeout:           5 * time.Second,
		MaxFrameBytes:         256 << 10,
		MaxContentBytes:       64 << 10,
		MaxGroupMembers:       10000,
		MaxDevices:            10,
		MaxInflightSends:      256,
		Window:                64,
		QueueSize:             1024,
		MaxResponseBytes:      1 << 20,
		WriteTimeout:          10 * time.Second,
		MaxQueueBytes:         8 << 20,
		MaxConcurrentStreams:  16,
		MaxUnauthStreams:      1024,
		ConnectionTimeout:     5 * time.Second,
		MaxConnectionIdle:     5 * time.Minute,
		MaxConnectionAge:      2 * time.Hour,
		MaxConnectionAgeGrace: time.Minute,
		SendRate:              100,
		SendBurst:             200,
		SendShards:            1,
		MaxBatch:              256,
		BatchLinger:           time.Millisecond,
		CursorFlushInterval:   time.Second,
		ReadFlushInterval:     readstate.DefaultInterval,
		AuthLimits:            DefaultAuthLimits(),
		SessionGCInterval:     5 * time.Minute,
		SessionGCBatch:        1000,
	}
}
