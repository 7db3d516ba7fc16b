package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Config is everything a node needs besides its store. DefaultConfig gives
// the values starlingd uses; each bound here is one the design asks for.
type Config struct {
	NodeID     string // announced in Welcome and logs
	NodeNumber int    // snowflake node bits, unique in a cluster (0..1023)

	TokenSecret []byte        // HS256 key, at least 32 bytes, the same on every node
	TokenTTL    time.Duration // token lifetime
	BcryptCost  int           // 0: bcrypt.DefaultCost

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
	SendRate     rate.Limit // messages/s per user (0: unlimited)
	SendBurst    int

	SendShards          int           // parallel commit pipelines
	MaxBatch            int           // messages per commit
	BatchLinger         time.Duration // under load, how long a commit waits to fill
	CursorFlushInterval time.Duration // how often acked cursors are written

	// Registerer receives the gRPC and hub metrics; nil: no metrics.
	Registerer prometheus.Registerer
}

// DefaultConfig returns production defaults for a single node.
func DefaultConfig() Config {
	return Config{
		NodeID:              "starling-0",
		TokenTTL:            30 * 24 * time.Hour,
		HeartbeatInterval:   30 * time.Second,
		AuthTimeout:         10 * time.Second,
		MaxFrameBytes:       256 << 10,
		MaxContentBytes:     64 << 10,
		MaxGroupMembers:     10000,
		MaxDevices:          10,
		MaxInflightSends:    256,
		Window:              64,
		QueueSize:           1024,
		MaxResponseBytes:    1 << 20,
		WriteTimeout:        10 * time.Second,
		SendRate:            100,
		SendBurst:           200,
		SendShards:          1,
		MaxBatch:            256,
		BatchLinger:         time.Millisecond,
		CursorFlushInterval: time.Second,
	}
}
