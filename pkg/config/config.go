// Package config loads Spillway's configuration: defaults < YAML file (--config) < environment
// (SPILLWAY_ prefix, plus Heroku-style ELASTICSEARCH_URL, DATABASE_URL and PORT) < flags. It is the
// only package that imports viper; components receive the typed structs.
package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Role names a binary; it selects the default listen address.
type Role string

// The three binaries.
const (
	RoleIngest   Role = "ingest"
	RoleSearch   Role = "search"
	RoleArchiver Role = "archiver"
)

// Config is everything a Spillway binary can be told. Every binary loads the whole tree; each
// uses its own sections.
type Config struct {
	Log           Log           `mapstructure:"log"`
	HTTP          HTTP          `mapstructure:"http"`
	Elasticsearch Elasticsearch `mapstructure:"elasticsearch"`
	Postgres      Postgres      `mapstructure:"postgres"`
	Ingest        Ingest        `mapstructure:"ingest"`
	Search        Search        `mapstructure:"search"`
	Archiver      Archiver      `mapstructure:"archiver"`
	Auth          Auth          `mapstructure:"auth"`
	RateLimit     RateLimit     `mapstructure:"ratelimit"`
}

// RateLimit configures per-principal token buckets: per API key, or per clientId (ingest) and
// per client address (search) when the service runs without keys. 0 disables a limit.
type RateLimit struct {
	IngestEventsPerSecond   float64 `mapstructure:"ingest_events_per_second"`
	IngestBurst             int     `mapstructure:"ingest_burst"`
	SearchRequestsPerSecond float64 `mapstructure:"search_requests_per_second"`
	SearchBurst             int     `mapstructure:"search_burst"`
}

// Log configures the JSON logger.
type Log struct {
	Level  string `mapstructure:"level"`  // debug, info, warn, error
	Format string `mapstructure:"format"` // json or text
}

// HTTP configures a service's listeners and its server limits.
type HTTP struct {
	Addr string `mapstructure:"addr"`
	// AdminAddr, when set, serves /metrics and /debug/pprof on a separate listener (and not on Addr).
	AdminAddr         string        `mapstructure:"admin_addr"`
	ReadHeaderTimeout time.Duration `mapstructure:"read_header_timeout"`
	ReadTimeout       time.Duration `mapstructure:"read_timeout"`
	WriteTimeout      time.Duration `mapstructure:"write_timeout"`
	IdleTimeout       time.Duration `mapstructure:"idle_timeout"`
	MaxHeaderBytes    ByteSize      `mapstructure:"max_header_bytes"`
	MaxConnections    int           `mapstructure:"max_connections"`
	// ShutdownGrace bounds a graceful stop: stop intake, drain, close. Heroku gives 30 s.
	ShutdownGrace time.Duration `mapstructure:"shutdown_grace"`
	// DrainDelay is the first part of the grace: /readyz fails and new requests get 503 with
	// Retry-After while the listener still accepts, so that a load balancer notices before
	// connections are refused. 0: the listener closes at once.
	DrainDelay time.Duration `mapstructure:"drain_delay"`
}

// Elasticsearch configures the connection to the cluster and the event indices.
type Elasticsearch struct {
	URLs     []string `mapstructure:"urls"`
	Username string   `mapstructure:"username"`
	Password Secret   `mapstructure:"password"`
	APIKey   Secret   `mapstructure:"api_key"`
	// CACert is a PEM file trusted for https URLs.
	CACert string `mapstructure:"ca_cert"`
	// IndexPrefix names the event indices (<prefix>-YYYY.MM.DD), their read alias (<prefix>) and
	// their template (<prefix>-template). Prefixes must not overlap (e.g. "events" and "events-x").
	IndexPrefix     string        `mapstructure:"index_prefix"`
	RefreshInterval time.Duration `mapstructure:"refresh_interval"`
	Shards          int           `mapstructure:"shards"`
	// Replicas is a number ("1") or an auto-expand range ("0-1": one replica when a second node exists).
	Replicas       string        `mapstructure:"replicas"`
	RequestTimeout time.Duration `mapstructure:"request_timeout"`
	MaxRetries     int           `mapstructure:"max_retries"`
}

// Postgres configures the archive database and the fixed pool.
type Postgres struct {
	URL Secret `mapstructure:"url"`
	// MaxConns is a hard cap on connections the process holds.
	MaxConns int32  `mapstructure:"max_conns"`
	Schema   string `mapstructure:"schema"`
	// StatementTimeout is set on every session (0 = server default).
	StatementTimeout time.Duration `mapstructure:"statement_timeout"`
	ConnectTimeout   time.Duration `mapstructure:"connect_timeout"`
}

// Ingest configures POST /api/v1/events and the bulk indexer behind it.
type Ingest struct {
	MaxBodyBytes      ByteSize      `mapstructure:"max_body_bytes"`
	MaxEvents         int           `mapstructure:"max_events"`
	MaxPayloadBytes   ByteSize      `mapstructure:"max_payload_bytes"`
	MaxPayloadDepth   int           `mapstructure:"max_payload_depth"`
	MaxPayloadKeys    int           `mapstructure:"max_payload_keys"`
	MaxFutureSkew     time.Duration `mapstructure:"max_future_skew"`
	MaxPastAge        time.Duration `mapstructure:"max_past_age"`
	AckTimeout        time.Duration `mapstructure:"ack_timeout"`
	InflightMaxBytes  ByteSize      `mapstructure:"inflight_max_bytes"`
	InflightMaxEvents int           `mapstructure:"inflight_max_events"`
	// BulkWorkers bounds the bulk requests in flight; below it their number adapts to
	// Elasticsearch's latency.
	BulkWorkers    int      `mapstructure:"bulk_workers"`
	BulkFlushBytes ByteSize `mapstructure:"bulk_flush_bytes"`
	// BulkFlushInterval is an optional linger: how long a bulk request waits for more events
	// after its first. 0: none, events are sent as soon as a request slot is free.
	BulkFlushInterval time.Duration `mapstructure:"bulk_flush_interval"`
	RetryAfter        time.Duration `mapstructure:"retry_after"`
	// QueueDelayTarget and QueueDelayInterval are admission control: while the oldest event
	// waiting for a bulk request has waited longer than the target for the interval, new
	// requests are refused with 429 at once. A target of 0 turns it off.
	QueueDelayTarget   time.Duration `mapstructure:"queue_delay_target"`
	QueueDelayInterval time.Duration `mapstructure:"queue_delay_interval"`
}

// Search configures the read API and the live stream.
type Search struct {
	DefaultLimit       int           `mapstructure:"default_limit"`
	MaxLimit           int           `mapstructure:"max_limit"`
	MaxClientIDs       int           `mapstructure:"max_client_ids"`
	MaxStreams         int           `mapstructure:"max_streams"`
	StreamPoll         time.Duration `mapstructure:"stream_poll"`
	StreamHeartbeat    time.Duration `mapstructure:"stream_heartbeat"`
	QueryTimeout       time.Duration `mapstructure:"query_timeout"`
	CursorKey          Secret        `mapstructure:"cursor_key"`
	PostgresMaxConns   int32         `mapstructure:"postgres_max_conns"`
	PostgresQueryLimit time.Duration `mapstructure:"postgres_statement_timeout"`
	// ColdTier makes search answer the part of a query below the cold boundary from PostgreSQL
	// (see docs/tiers.md). Off: Elasticsearch only, PostgreSQL never contacted.
	ColdTier bool `mapstructure:"cold_tier"`
	// ColdBoundaryRefresh is how often search re-reads the cold boundary; retention waits a
	// multiple of it between moving the boundary and deleting indices.
	ColdBoundaryRefresh time.Duration `mapstructure:"cold_boundary_refresh"`
}

// Archiver configures the Elasticsearch-to-PostgreSQL copier.
type Archiver struct {
	BatchSize      int           `mapstructure:"batch_size"`
	PollInterval   time.Duration `mapstructure:"poll_interval"`
	BackoffMax     time.Duration `mapstructure:"backoff_max"`
	VerifyInterval time.Duration `mapstructure:"verify_interval"`
	VerifyWindow   time.Duration `mapstructure:"verify_window"`
	VerifyBucket   time.Duration `mapstructure:"verify_bucket"`
	// RetentionAfter, when positive, makes `archiver run` drop the daily indices older than it
	// once verified archived (what `archiver retention --older-than` does), hourly.
	RetentionAfter time.Duration `mapstructure:"retention_after"`
}

// Auth configures API keys.
type Auth struct {
	// KeysFile is a YAML file of hashed API keys (see docs/api.md, Authentication).
	KeysFile string `mapstructure:"keys_file"`
	// Keys are hashed keys given inline or through SPILLWAY_AUTH_KEYS: ';'-separated entries
	// "name:role:sha256:<hex>[:client,client]". Only hashes belong here, but the value is
	// redacted in logs anyway: a key pasted by mistake in place of its hash must not be printed.
	Keys Secret `mapstructure:"keys"`
	// InsecureNoAuth allows serving without keys on a non-loopback address.
	InsecureNoAuth bool `mapstructure:"insecure_no_auth"`
}

// Validate checks every section and returns the first problem, naming its key.
func (c *Config) Validate() error {
	var errs []string
	bad := func(key, format string, args ...any) {
		errs = append(errs, key+": "+fmt.Sprintf(format, args...))
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		bad("log.format", "must be json or text, got %q", c.Log.Format)
	}
	if c.HTTP.Addr == "" {
		bad("http.addr", "must not be empty")
	}
	positiveDur(bad, "http.read_header_timeout", c.HTTP.ReadHeaderTimeout)
	positiveDur(bad, "http.read_timeout", c.HTTP.ReadTimeout)
	positiveDur(bad, "http.idle_timeout", c.HTTP.IdleTimeout)
	positiveDur(bad, "http.shutdown_grace", c.HTTP.ShutdownGrace)
	if c.HTTP.DrainDelay < 0 || c.HTTP.DrainDelay >= c.HTTP.ShutdownGrace {
		bad("http.drain_delay", "must be at least 0 and less than http.shutdown_grace (%s), of which it is the first part", c.HTTP.ShutdownGrace)
	}
	if c.HTTP.WriteTimeout < 0 {
		bad("http.write_timeout", "must not be negative")
	}
	if c.HTTP.MaxHeaderBytes < 1024 {
		bad("http.max_header_bytes", "must be at least 1KiB")
	}
	if c.HTTP.MaxConnections < 1 {
		bad("http.max_connections", "must be at least 1")
	}

	if len(c.Elasticsearch.URLs) == 0 {
		bad("elasticsearch.urls", "at least one URL is required")
	}
	for _, u := range c.Elasticsearch.URLs {
		if err := checkURL(u, "http", "https"); err != nil {
			bad("elasticsearch.urls", "%s", err)
		}
	}
	if !validPrefix(c.Elasticsearch.IndexPrefix) {
		bad("elasticsearch.index_prefix", "must be 1-40 characters of a-z, 0-9, _ and -, starting with a letter, got %q", c.Elasticsearch.IndexPrefix)
	}
	positiveDur(bad, "elasticsearch.refresh_interval", c.Elasticsearch.RefreshInterval)
	positiveDur(bad, "elasticsearch.request_timeout", c.Elasticsearch.RequestTimeout)
	if c.Elasticsearch.Shards < 1 || c.Elasticsearch.Shards > 64 {
		bad("elasticsearch.shards", "must be between 1 and 64")
	}
	if !validReplicas(c.Elasticsearch.Replicas) {
		bad("elasticsearch.replicas", "must be a number or a range like 0-1, got %q", c.Elasticsearch.Replicas)
	}
	if c.Elasticsearch.MaxRetries < 0 {
		bad("elasticsearch.max_retries", "must not be negative")
	}

	if c.Postgres.URL != "" {
		if err := checkURL(string(c.Postgres.URL), "postgres", "postgresql"); err != nil {
			bad("postgres.url", "%s", err)
		}
	}
	if c.Postgres.MaxConns < 1 || c.Postgres.MaxConns > 100 {
		bad("postgres.max_conns", "must be between 1 and 100")
	}
	if !validIdent(c.Postgres.Schema) {
		bad("postgres.schema", "must be a plain identifier (a-z, 0-9, _), got %q", c.Postgres.Schema)
	}
	positiveDur(bad, "postgres.connect_timeout", c.Postgres.ConnectTimeout)

	in := c.Ingest
	if in.MaxBodyBytes < 1024 {
		bad("ingest.max_body_bytes", "must be at least 1KiB")
	}
	if in.MaxEvents < 1 {
		bad("ingest.max_events", "must be at least 1")
	}
	if in.MaxPayloadBytes < 2 || in.MaxPayloadBytes > in.MaxBodyBytes {
		bad("ingest.max_payload_bytes", "must be between 2 bytes and ingest.max_body_bytes")
	}
	if in.MaxPayloadDepth < 1 || in.MaxPayloadDepth > 20 {
		bad("ingest.max_payload_depth", "must be between 1 and 20 (the index's flattened depth limit)")
	}
	if in.MaxPayloadKeys < 1 {
		bad("ingest.max_payload_keys", "must be at least 1")
	}
	positiveDur(bad, "ingest.max_future_skew", in.MaxFutureSkew)
	positiveDur(bad, "ingest.max_past_age", in.MaxPastAge)
	positiveDur(bad, "ingest.ack_timeout", in.AckTimeout)
	if in.InflightMaxBytes < in.MaxBodyBytes {
		bad("ingest.inflight_max_bytes", "must be at least ingest.max_body_bytes")
	}
	if in.InflightMaxEvents < in.MaxEvents {
		bad("ingest.inflight_max_events", "must be at least ingest.max_events")
	}
	if in.BulkWorkers < 1 || in.BulkWorkers > 256 {
		bad("ingest.bulk_workers", "must be between 1 and 256")
	}
	if in.BulkFlushBytes < 1024 {
		bad("ingest.bulk_flush_bytes", "must be at least 1KiB")
	}
	if in.BulkFlushInterval < 0 {
		bad("ingest.bulk_flush_interval", "must not be negative (0: no linger)")
	}
	positiveDur(bad, "ingest.retry_after", in.RetryAfter)
	if in.QueueDelayTarget < 0 || in.QueueDelayTarget >= in.AckTimeout {
		bad("ingest.queue_delay_target", "must be at least 0 (0: off) and less than ingest.ack_timeout")
	}
	positiveDur(bad, "ingest.queue_delay_interval", in.QueueDelayInterval)

	s := c.Search
	if s.MaxLimit < 1 || s.MaxLimit > 10000 {
		bad("search.max_limit", "must be between 1 and 10000")
	}
	if s.DefaultLimit < 1 || s.DefaultLimit > s.MaxLimit {
		bad("search.default_limit", "must be between 1 and search.max_limit")
	}
	if s.MaxClientIDs < 1 || s.MaxClientIDs > 1000 {
		bad("search.max_client_ids", "must be between 1 and 1000")
	}
	if s.MaxStreams < 0 {
		bad("search.max_streams", "must not be negative")
	}
	positiveDur(bad, "search.stream_poll", s.StreamPoll)
	positiveDur(bad, "search.stream_heartbeat", s.StreamHeartbeat)
	positiveDur(bad, "search.query_timeout", s.QueryTimeout)
	if k := s.CursorKey.Value(); k != "" && len(k) < 16 {
		// A short key could be found offline from the cursors clients hold, and then forged.
		bad("search.cursor_key", "must be empty (a random key per process) or at least 16 bytes")
	}
	if s.PostgresMaxConns < 1 || s.PostgresMaxConns > 100 {
		bad("search.postgres_max_conns", "must be between 1 and 100")
	}
	positiveDur(bad, "search.postgres_statement_timeout", s.PostgresQueryLimit)
	positiveDur(bad, "search.cold_boundary_refresh", s.ColdBoundaryRefresh)

	a := c.Archiver
	if a.BatchSize < 1 || a.BatchSize > 10000 {
		bad("archiver.batch_size", "must be between 1 and 10000 (Elasticsearch's page limit)")
	}
	positiveDur(bad, "archiver.poll_interval", a.PollInterval)
	positiveDur(bad, "archiver.backoff_max", a.BackoffMax)
	positiveDur(bad, "archiver.verify_bucket", a.VerifyBucket)
	if a.VerifyInterval < 0 || a.VerifyWindow < 0 || a.RetentionAfter < 0 {
		bad("archiver", "verify_interval, verify_window and retention_after must not be negative")
	}
	if a.RetentionAfter > 0 {
		if err := RetentionAllowed(a.RetentionAfter, c); err != nil {
			bad("archiver.retention_after", "%v", err)
		}
	}

	rl := c.RateLimit
	if rl.IngestEventsPerSecond < 0 || rl.SearchRequestsPerSecond < 0 {
		bad("ratelimit", "rates must not be negative")
	}
	if rl.IngestEventsPerSecond > 0 && rl.IngestBurst < c.Ingest.MaxEvents {
		bad("ratelimit.ingest_burst", "must be at least ingest.max_events, or a full request could never pass")
	}
	if rl.SearchRequestsPerSecond > 0 && rl.SearchBurst < 1 {
		bad("ratelimit.search_burst", "must be at least 1")
	}

	if len(errs) > 0 {
		return &Error{Problems: errs}
	}
	return nil
}

// BoundaryMaxAge is how long search trusts a cold boundary it has read: four refresh
// intervals, so one failed re-read does not matter.
func (s Search) BoundaryMaxAge() time.Duration { return 4 * s.ColdBoundaryRefresh }

// RetentionGrace is how long retention waits between moving the cold boundary and deleting
// indices: until every search replica has re-read the boundary (BoundaryMaxAge) and finished the
// queries it started with the old one (search.query_timeout), plus a second of slack.
func (c *Config) RetentionGrace() time.Duration {
	return c.Search.BoundaryMaxAge() + c.Search.QueryTimeout + time.Second
}

// RetentionAllowed says whether Elasticsearch indices older than olderThan may be dropped under
// this configuration. Ingest accepts events up to ingest.max_past_age old: an index younger than
// that (plus a day, for the index's own width and clock differences) could still receive an
// event after it was dropped, below the cold boundary where search no longer looks. And without
// search.cold_tier, search would stop returning the dropped events altogether.
func RetentionAllowed(olderThan time.Duration, c *Config) error {
	if floor := c.Ingest.MaxPastAge + 24*time.Hour; olderThan <= floor {
		return fmt.Errorf("must be longer than ingest.max_past_age + 24h (%s), or an index could be recreated by a late event after it was dropped; got %s", floor, olderThan)
	}
	if !c.Search.ColdTier {
		return fmt.Errorf("needs search.cold_tier=true (in the configuration search runs with, too): without it search does not read PostgreSQL and dropped events would vanish from the API")
	}
	return nil
}

// Error lists invalid configuration values, each starting with its key.
type Error struct{ Problems []string }

func (e *Error) Error() string { return "invalid configuration: " + strings.Join(e.Problems, "; ") }

func positiveDur(bad func(string, string, ...any), key string, d time.Duration) {
	if d <= 0 {
		bad(key, "must be a positive duration, got %s", d)
	}
}

func checkURL(raw string, schemes ...string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL: %s", redactURL(raw))
	}
	for _, s := range schemes {
		if u.Scheme == s && u.Host != "" {
			return nil
		}
	}
	return fmt.Errorf("%s must be a %s URL with a host", redactURL(raw), strings.Join(schemes, " or "))
}

func validPrefix(p string) bool {
	if len(p) < 1 || len(p) > 40 || p[0] < 'a' || p[0] > 'z' {
		return false
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

func validIdent(p string) bool {
	if len(p) < 1 || len(p) > 63 || !(p[0] >= 'a' && p[0] <= 'z' || p[0] == '_') {
		return false
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

func validReplicas(r string) bool {
	lo, hi, isRange := strings.Cut(r, "-")
	isNum := func(s string) bool {
		if s == "" || len(s) > 2 {
			return false
		}
		for _, c := range s {
			if c < '0' || c > '9' {
				return false
			}
		}
		return true
	}
	if !isRange {
		return isNum(r)
	}
	return isNum(lo) && (isNum(hi) || hi == "all")
}
