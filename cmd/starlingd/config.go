package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/starling-im/starling/server"
	"github.com/starling-im/starling/server/auth"
	"github.com/starling-im/starling/server/push"
)

// config is starlingd's command line.
type config struct {
	Listen          string
	DataDir         string
	DB              string
	Redis           string
	RedisPrefix     string
	Resync          time.Duration
	MetricsListen   string
	TLSCert         string
	TLSKey          string
	TokenSecret     string
	TokenSecretFile string
	AdminKeysFile   string
	AdminKey        string
	AdminClientCA   string
	PushWebhook     string
	PushSecret      string
	PushWindow      time.Duration
	PushPreview     bool
	EventWebhook    string
	EventSecret     string
	Events          string
	TokenTTL        time.Duration
	NodeID          string
	LogLevel        slog.Level
	LogFormat       string
	OTLPEndpoint    string
	OTLPInsecure    bool
	SendRate        float64
	BcryptCost      int
	Pprof           bool
	Window          int
	DMPolicy        string
	Heartbeat       time.Duration

	// Login and Register limits (auth.Limits) and session collection.
	LoginRate          float64
	LoginBurst         int
	RegisterRate       float64
	RegisterBurst      int
	LoginFailures      int
	LoginFailureWindow time.Duration
	LoginBackoff       time.Duration
	LoginBackoffMax    time.Duration
	MaxBcrypt          int
	BcryptWait         time.Duration
	AuthTracked        int
	SessionCacheTTL    time.Duration
	SessionGCInterval  time.Duration
	SessionGCBatch     int
}

// Bounds on flag values: past them a value is a mistake, not a setting.
const (
	maxWindow = 10000 // unacknowledged pushes per device; the queue is made 4× larger
	maxRate   = 1e6   // any per-second rate or burst
	// The heartbeat interval clients are told: below 100 ms a loaded node
	// would close healthy streams; above 10 min a dead one lingers half an hour.
	minHeartbeat = 100 * time.Millisecond
	maxHeartbeat = 10 * time.Minute
)

// parseConfig reads flags, each falling back to STARLING_<NAME> from
// getenv; a flag given on the command line wins over the environment. It
// returns flag.ErrHelp for -h/--help (printHelp shows it).
func parseConfig(args []string, getenv func(string) string) (config, error) {
	var c config
	var level string
	fs := newFlagSet(&c, &level)

	// Environment first, so the command line overrides it.
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := envName(f.Name)
		if v := getenv(name); v != "" {
			if err := f.Value.Set(v); err != nil && envErr == nil {
				envErr = fmt.Errorf("%s=%q: %w", name, v, err)
			}
		}
	})
	if envErr != nil {
		return config{}, envErr
	}
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if err := c.LogLevel.UnmarshalText([]byte(level)); err != nil {
		return config{}, fmt.Errorf("--log-level: %w", err)
	}
	if err := c.validate(); err != nil {
		return config{}, err
	}
	return c, nil
}

// newFlagSet defines every flag of starlingd on c (and the log level, a
// string until parsed, on level).
func newFlagSet(c *config, level *string) *flag.FlagSet {
	fs := flag.NewFlagSet("starlingd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:7070", "gRPC listen address")
	fs.StringVar(&c.DataDir, "data-dir", "./data", "directory of the embedded SQLite database (and the generated token secret)")
	fs.StringVar(&c.DB, "db", "", "postgres:// or postgresql:// URL of CockroachDB or PostgreSQL (default: embedded SQLite in --data-dir)")
	fs.StringVar(&c.Redis, "redis", "", "Redis URL for cluster mode (presence and cross-node routing; needs --db and the same token secret on every node): redis:// or rediss:// for one Redis; with ?master_name=NAME a Sentinel set (more sentinels as &addr=host:port); with &addr=host:port for each further node a Redis Cluster")
	fs.StringVar(&c.RedisPrefix, "redis-prefix", "starling:", "prefix of every Redis key and channel, so several clusters can share one Redis")
	fs.DurationVar(&c.Resync, "resync-interval", time.Minute, "cluster mode: how often every stream re-reads what it is behind on and presence is re-read whole, the safety net for deliveries lost between nodes; 0: never")
	fs.StringVar(&c.MetricsListen, "metrics-listen", "", "address for HTTP /metrics (Prometheus), /healthz and /readyz (default: off)")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "TLS certificate file (PEM); with --tls-key serves gRPC over TLS; both re-read on SIGHUP (a renewed certificate serves new connections)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "TLS private key file (PEM)")
	fs.StringVar(&c.AdminKeysFile, "admin-keys-file", "", "JSON file of the API keys that open AdminService (name, SHA-256 of the key, scopes; see docs/operations.md); re-read on SIGHUP")
	fs.StringVar(&c.AdminClientCA, "admin-client-ca", "", "PEM file of the CAs whose client certificates open AdminService (needs --tls-cert and --admin-keys-file): the node then requests, never requires, a client certificate; one signed by these CAs opens AdminService as the --admin-keys-file entry whose cert_cn is its subject common name or one of its DNS names, with that entry's scopes. A certificate never opens the user services; re-read on SIGHUP")
	fs.StringVar(&c.AdminKey, "admin-key", "", "one API key with every AdminService scope (at least 32 bytes; prefer STARLING_ADMIN_KEY or --admin-keys-file, which keeps only hashes)")
	fs.StringVar(&c.PushWebhook, "push-webhook", "", "URL that offline notifications are POSTed to, signed with --push-webhook-secret (default: they are only logged)")
	fs.StringVar(&c.PushSecret, "push-webhook-secret", "", "HMAC-SHA256 secret that signs --push-webhook calls, at least 16 bytes")
	fs.DurationVar(&c.PushWindow, "push-window", 2*time.Second, "messages to one offline user within this window make one notification, with a count")
	fs.BoolVar(&c.PushPreview, "push-preview", true, "offline notifications carry the newest message's text (at most 100 characters)")
	fs.StringVar(&c.EventWebhook, "event-webhook", "", "URL that the --events are POSTed to, signed with --event-webhook-secret (default: off)")
	fs.StringVar(&c.EventSecret, "event-webhook-secret", "", "HMAC-SHA256 secret that signs --event-webhook calls, at least 16 bytes")
	fs.StringVar(&c.Events, "events", "", "comma-separated event types sent to --event-webhook: message.stored, group.changed, user.online, user.offline, friend.changed (see docs/design.md for their JSON)")
	fs.StringVar(&c.TokenSecret, "token-secret", "", "secret that signs tokens, at least 32 bytes (make one with: starlingd gen-secret); prefer STARLING_TOKEN_SECRET or --token-secret-file, since ps shows a command line to every user. Generated and kept in --data-dir when neither is set (single node on the embedded database only)")
	fs.StringVar(&c.TokenSecretFile, "token-secret-file", "", "`PATH` of a file holding the token secret (as --token-secret; a trailing newline is ignored); a file others may read is logged as a warning")
	fs.DurationVar(&c.TokenTTL, "token-ttl", 30*24*time.Hour, "lifetime of login tokens")
	fs.StringVar(&c.NodeID, "node-id", "", "this node's name in logs and Welcome frames, unique in a cluster: letters, digits, '.', '_' and '-', at most 64 (default: host name)")
	fs.StringVar(level, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format on standard error: text or json")
	fs.StringVar(&c.OTLPEndpoint, "otlp-endpoint", "", "host:port of an OpenTelemetry collector (OTLP over gRPC) to send traces to (default: tracing off)")
	fs.BoolVar(&c.OTLPInsecure, "otlp-insecure", false, "talk to --otlp-endpoint without TLS")
	fs.Float64Var(&c.SendRate, "send-rate", 100, "messages per second one user may send (0: unlimited)")
	fs.BoolVar(&c.Pprof, "pprof", false, "also serve /debug/pprof/ on --metrics-listen")
	fs.IntVar(&c.BcryptCost, "bcrypt-cost", 10, "bcrypt cost of stored passwords (4-31); lower only for load tests that register many users")
	fs.StringVar(&c.DMPolicy, "dm-policy", "anyone", "who may send one-to-one messages: anyone, or friends (only friends may message each other; others are refused PERMISSION_DENIED and nothing is stored). Blocks are enforced under both")
	fs.DurationVar(&c.Heartbeat, "heartbeat-interval", 30*time.Second, fmt.Sprintf("how often clients are told to Ping (announced in Welcome); a stream silent for 3 intervals is closed (Disconnect IDLE). Shorter keeps streams alive through NATs and proxies that drop idle connections sooner, at the cost of battery and traffic (%v-%v; below a second only for tests)", minHeartbeat, maxHeartbeat))
	fs.IntVar(&c.Window, "window", 64, fmt.Sprintf("pushes a device may leave unacknowledged before it is sent Notify instead (1-%d)", maxWindow))

	// Login and Register limits. Defaults: server.DefaultAuthLimits.
	lim := server.DefaultAuthLimits()
	const perAddress = " The client address is the gRPC peer's IP (IPv6: its /64); behind a proxy or load balancer it is the proxy's, shared by every client behind it: raise the limit there, or set 0."
	fs.Float64Var(&c.LoginRate, "login-rate", float64(lim.LoginRate), "Login attempts per second one client address may make, right or wrong, in bursts of --login-burst; past it: RESOURCE_EXHAUSTED. 0: unlimited."+perAddress)
	fs.IntVar(&c.LoginBurst, "login-burst", lim.LoginBurst, "burst of --login-rate")
	fs.Float64Var(&c.RegisterRate, "register-rate", float64(lim.RegisterRate), "registrations per second one client address may make (0.05: one every 20 s), in bursts of --register-burst; past it: RESOURCE_EXHAUSTED. 0: unlimited."+perAddress)
	fs.IntVar(&c.RegisterBurst, "register-burst", lim.RegisterBurst, "burst of --register-rate")
	fs.IntVar(&c.LoginFailures, "login-failures", lim.FailedLogins, "failed logins of one username (from anywhere) within --login-failure-window before each further attempt must wait --login-backoff, doubling with every failure up to --login-backoff-max; attempts before then are refused RESOURCE_EXHAUSTED without checking the password. A successful login resets it. 0: no backoff")
	fs.DurationVar(&c.LoginFailureWindow, "login-failure-window", lim.FailureWindow, "a username's failed logins are forgotten after this long without failures (counted from the end of any backoff)")
	fs.DurationVar(&c.LoginBackoff, "login-backoff", lim.LoginBackoff, "the first wait after --login-failures failed logins of a username")
	fs.DurationVar(&c.LoginBackoffMax, "login-backoff-max", lim.MaxLoginBackoff, "the longest wait between login attempts of a username under attack: the most an attacker can delay its owner's login once they stop")
	fs.IntVar(&c.MaxBcrypt, "max-bcrypt", lim.MaxBcrypt, "password hashes (Login, Register) computed at once on this node, so logins cannot take every CPU from chat; the default is half the CPUs. 0: unlimited")
	fs.DurationVar(&c.BcryptWait, "bcrypt-wait", lim.BcryptWait, "how long a Login or Register waits for a free --max-bcrypt slot before it is refused UNAVAILABLE (server busy)")
	fs.IntVar(&c.AuthTracked, "auth-tracked", lim.MaxTracked, "client addresses and usernames each login/register limiter remembers, and login sessions the --session-cache-ttl cache remembers (bounds their memory; idle ones are forgotten first)")
	fs.DurationVar(&c.SessionCacheTTL, "session-cache-ttl", lim.SessionCacheTTL, "how long a token check reuses this node's last read of the token's login session instead of reading the database: a logout through this node is refused here at once, one through another node of a cluster within this long (the device's open stream is closed by the logout at once either way). 0: every token check reads the database")
	d := server.DefaultConfig()
	fs.DurationVar(&c.SessionGCInterval, "session-gc-interval", d.SessionGCInterval, "how often expired and revoked login sessions are deleted from the database; 0: never")
	fs.IntVar(&c.SessionGCBatch, "session-gc-batch", d.SessionGCBatch, "login sessions deleted per transaction by the session collector")
	return fs
}

// validate checks every value before anything is opened, bound or
// written: a start that fails here leaves nothing behind.
func (c config) validate() error {
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if c.AdminClientCA != "" && (c.TLSCert == "" || c.AdminKeysFile == "") {
		return errors.New("--admin-client-ca needs --tls-cert (client certificates travel in the TLS handshake) and --admin-keys-file (whose cert_cn entries name the certificates)")
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("--log-format must be text or json, not %q", c.LogFormat)
	}
	if c.OTLPEndpoint != "" {
		if err := checkAddr("--otlp-endpoint", c.OTLPEndpoint); err != nil {
			return err
		}
	} else if c.OTLPInsecure {
		return errors.New("--otlp-insecure needs --otlp-endpoint")
	}
	if c.DB != "" && !strings.HasPrefix(c.DB, "postgres://") && !strings.HasPrefix(c.DB, "postgresql://") {
		return errors.New("--db must be a postgres:// or postgresql:// URL (CockroachDB or PostgreSQL)")
	}
	if c.Redis != "" {
		if c.DB == "" {
			return errors.New("--redis needs --db: the nodes of a cluster share one CockroachDB or PostgreSQL database (the embedded SQLite is one node's)")
		}
		rc, err := redisClient(c.Redis)
		if err != nil {
			return fmt.Errorf("--redis: %w", err)
		}
		rc.Close()
	}
	if c.Resync < 0 {
		return fmt.Errorf("--resync-interval must not be negative, not %v", c.Resync)
	}
	if c.NodeID != "" && !validNodeID(c.NodeID) {
		return fmt.Errorf("--node-id %q: use letters, digits, '.', '_' and '-', at most 64", c.NodeID)
	}
	if c.TokenSecret != "" && len(c.TokenSecret) < 32 {
		return errors.New("--token-secret must be at least 32 bytes (make one with: starlingd gen-secret)")
	}
	if c.TokenSecret != "" && c.TokenSecretFile != "" {
		return errors.New("--token-secret (or STARLING_TOKEN_SECRET) and --token-secret-file (or STARLING_TOKEN_SECRET_FILE) are both set: set one")
	}
	if c.PushWebhook != "" && len(c.PushSecret) < 16 {
		return errors.New("--push-webhook needs --push-webhook-secret of at least 16 bytes")
	}
	if c.PushWebhook != "" && !strings.HasPrefix(c.PushWebhook, "http://") && !strings.HasPrefix(c.PushWebhook, "https://") {
		return errors.New("--push-webhook must be an http:// or https:// URL")
	}
	if c.EventWebhook != "" && len(c.EventSecret) < 16 {
		return errors.New("--event-webhook needs --event-webhook-secret of at least 16 bytes")
	}
	if c.EventWebhook != "" && !strings.HasPrefix(c.EventWebhook, "http://") && !strings.HasPrefix(c.EventWebhook, "https://") {
		return errors.New("--event-webhook must be an http:// or https:// URL")
	}
	if types, err := push.ParseEventTypes(c.Events); err != nil {
		return fmt.Errorf("--events: %w", err)
	} else if len(types) > 0 && c.EventWebhook == "" {
		return errors.New("--events needs --event-webhook")
	}
	if c.PushWindow <= 0 {
		return errors.New("--push-window must be positive")
	}
	if c.AdminKey != "" && len(c.AdminKey) < 32 {
		return errShortAdminKey
	}
	if c.Pprof && c.MetricsListen == "" {
		return errors.New("--pprof needs --metrics-listen")
	}
	if c.BcryptCost < 4 || c.BcryptCost > 31 {
		return errors.New("--bcrypt-cost must be 4-31")
	}
	if !validRate(c.SendRate) || c.Window < 1 || c.Window > maxWindow {
		return fmt.Errorf("--send-rate must be 0-%g and --window 1-%d", float64(maxRate), maxWindow)
	}
	if c.Heartbeat < minHeartbeat || c.Heartbeat > maxHeartbeat {
		return fmt.Errorf("--heartbeat-interval must be %v-%v, not %v", minHeartbeat, maxHeartbeat, c.Heartbeat)
	}
	if c.DMPolicy != "anyone" && c.DMPolicy != "friends" {
		return fmt.Errorf("--dm-policy must be anyone or friends, not %q", c.DMPolicy)
	}
	if c.TokenTTL <= 0 {
		return fmt.Errorf("--token-ttl must be positive, not %v", c.TokenTTL)
	}
	if err := checkAddr("--listen", c.Listen); err != nil {
		return err
	}
	if c.MetricsListen != "" {
		if err := checkAddr("--metrics-listen", c.MetricsListen); err != nil {
			return err
		}
	}
	for name, r := range map[string]float64{"--login-rate": c.LoginRate, "--register-rate": c.RegisterRate} {
		if !validRate(r) {
			return fmt.Errorf("%s must be 0-%g, not %v", name, float64(maxRate), r)
		}
	}
	for name, n := range map[string]int{"--login-burst": c.LoginBurst, "--register-burst": c.RegisterBurst, "--login-failures": c.LoginFailures,
		"--max-bcrypt": c.MaxBcrypt, "--auth-tracked": c.AuthTracked, "--session-gc-batch": c.SessionGCBatch} {
		if n < 0 || n > maxRate {
			return fmt.Errorf("%s must be 0-%d, not %d", name, int(maxRate), n)
		}
	}
	for name, d := range map[string]time.Duration{"--login-failure-window": c.LoginFailureWindow, "--login-backoff": c.LoginBackoff,
		"--login-backoff-max": c.LoginBackoffMax, "--bcrypt-wait": c.BcryptWait, "--session-gc-interval": c.SessionGCInterval,
		"--session-cache-ttl": c.SessionCacheTTL} {
		if d < 0 {
			return fmt.Errorf("%s must not be negative, not %v", name, d)
		}
	}
	if c.SessionGCInterval > 0 && c.SessionGCBatch < 1 {
		return errors.New("--session-gc-batch must be at least 1 (or --session-gc-interval 0)")
	}
	if err := c.authLimits().Validate(); err != nil {
		return fmt.Errorf("login/register limits: %w", err)
	}
	return nil
}

// validNodeID: a node id names Redis keys and channels and appears in
// logs; keep it plain.
func validNodeID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// validRate: finite, not negative, not absurd.
func validRate(r float64) bool { return r >= 0 && r <= maxRate }

// checkAddr checks that addr is host:port (binding it tells the rest).
func checkAddr(flag, addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%s %q: %w", flag, addr, err)
	}
	return nil
}

// authLimits are the Login and Register limits the flags ask for.
func (c config) authLimits() auth.Limits {
	return auth.Limits{
		LoginRate:       rate.Limit(c.LoginRate),
		LoginBurst:      c.LoginBurst,
		RegisterRate:    rate.Limit(c.RegisterRate),
		RegisterBurst:   c.RegisterBurst,
		FailedLogins:    c.LoginFailures,
		FailureWindow:   c.LoginFailureWindow,
		LoginBackoff:    c.LoginBackoff,
		MaxLoginBackoff: c.LoginBackoffMax,
		MaxBcrypt:       c.MaxBcrypt,
		BcryptWait:      c.BcryptWait,
		SessionCacheTTL: c.SessionCacheTTL,
		MaxTracked:      c.AuthTracked,
	}
}

// envName is the environment variable of a flag: STARLING_ and the flag's
// name in upper case, '-' as '_'.
func envName(flag string) string {
	return "STARLING_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}
