// Package archive copies indexed events from Elasticsearch into PostgreSQL exactly once, and
// proves it.
//
// The archiver follows each shard of each event index by sequence number (esstore's feed): it
// reads the global checkpoint, refreshes, and copies the documents with checkpoint < _seq_no ≤
// global checkpoint, page by page. Each page is committed to PostgreSQL in one transaction
// together with the shard's new position, and ids already present are skipped, so a crash at any
// point leaves all of a page or none of it, and nothing is ever written twice. Everything at or
// below a global checkpoint is durable and, after the refresh, visible; nothing can appear there
// later. Unlike a cursor on a timestamp, the feed therefore cannot skip an event that became
// visible late (a retried bulk request, a paused ingest process, skewed clocks).
//
// One process leads at a time (a PostgreSQL advisory lock held by the session its batches are
// written on); the others wait and take over when the leader's session ends. Verify compares
// both stores per time bucket and can repair; Backfill archives a time range outside the feed;
// Status reports positions, lag and errors.
package archive

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/pgstore"
	"github.com/spillway/spillway/pkg/resilience"
)

// Feed is the per-shard sequence-number feed of the event indices (esstore.Store).
type Feed interface {
	// Prefix names the event indices; the lease is per prefix.
	Prefix() string
	DayOf(index string) (day time.Time, ok bool)
	Shards(ctx context.Context) ([]event.Shard, error)
	RefreshIndices(ctx context.Context, indices ...string) error
	ReadShard(ctx context.Context, q event.FeedQuery) ([]event.Sequenced, error)
	OldestAfter(ctx context.Context, index string, shard int, after int64) (time.Time, bool, error)
}

// Sampler answers verification's questions about Elasticsearch (esstore.Store).
type Sampler interface {
	CountShard(ctx context.Context, index string, shard int, upTo int64, ranges []event.Range) ([]event.ShardCount, error)
	ShardIDs(ctx context.Context, index string, shard int, upTo int64, r event.Range, limit int) ([]string, error)
	// DocsByID returns the documents with the ids whose @timestamp is in r.
	DocsByID(ctx context.Context, ids []string, r event.Range) ([]event.Event, error)
}

// Scanner reads a time range for backfill (esstore.Store).
type Scanner interface {
	CountRange(ctx context.Context, r event.Range) (int64, error)
	ScanRange(ctx context.Context, r event.Range, size int, fn func([]event.Event) error) error
}

// Source is everything the archiver reads from Elasticsearch. *esstore.Store implements it; all
// methods are safe for concurrent use.
type Source interface {
	Feed
	Sampler
	Scanner
}

// Lease is the leadership and the connection the leader writes on (*pgstore.Lease). Not safe
// for concurrent use; Release must be called exactly once.
type Lease interface {
	Checkpoints(ctx context.Context) ([]pgstore.Checkpoint, error)
	// Commit writes a batch and moves its checkpoint atomically; it fails with an error
	// matching pgstore.ErrCheckpointMoved, having written nothing, when the checkpoint is not
	// where the batch started.
	Commit(ctx context.Context, b pgstore.Batch) (pgstore.Result, error)
	// Alive returns nil while the lease is held.
	Alive(ctx context.Context) error
	Release()
}

// Sink is everything the archiver does in PostgreSQL. Use Postgres to adapt a *pgstore.Store.
// All methods are safe for concurrent use and take connections from one capped pool.
type Sink interface {
	Migrate(ctx context.Context) error
	// ClaimPrefix records the index prefix the schema archives, or fails with an error matching
	// pgstore.ErrOtherPrefix when it archives another one.
	ClaimPrefix(ctx context.Context, prefix string) error
	// EnsurePartitions creates the day partitions of the instants' UTC days that are missing.
	EnsurePartitions(ctx context.Context, times ...time.Time) error
	// Partitions lists the day partitions, oldest first.
	Partitions(ctx context.Context) ([]pgstore.Partition, error)
	// DropPartition drops one day partition with its rows.
	DropPartition(ctx context.Context, day time.Time) error
	// V1 reports the move of a version-1 archive; ok is false when there is none.
	V1(ctx context.Context) (pgstore.V1State, bool, error)
	// OpenRestore, CloseRestore and Restores keep the record of the archive found behind the
	// retention log (restore.go).
	OpenRestore(ctx context.Context, found, droppedThrough time.Time) (pgstore.Restore, error)
	CloseRestore(ctx context.Context, id int64, lost []pgstore.LostDay) error
	Restores(ctx context.Context) ([]pgstore.Restore, error)
	// Lead takes the lease called name without waiting, or fails with pgstore.ErrNotLeader.
	Lead(ctx context.Context, name string) (Lease, error)
	Leader(ctx context.Context, name string) (pgstore.LeaderInfo, bool, error)
	Checkpoints(ctx context.Context) ([]pgstore.Checkpoint, error)
	CountRanges(ctx context.Context, ranges []event.Range) ([]pgstore.RangeCount, error)
	IDsInRange(ctx context.Context, r event.Range, limit int) ([]string, error)
	CopyEvents(ctx context.Context, origin pgstore.Origin, rows []event.Event) (pgstore.Result, error)
	State(ctx context.Context) (pgstore.State, error)
	RecordError(ctx context.Context, msg string, at time.Time) error
	RecordVerify(ctx context.Context, v pgstore.VerifyRecord) error
}

// Postgres adapts a pgstore.Store to Sink.
func Postgres(s *pgstore.Store) Sink { return pgSink{s} }

type pgSink struct{ *pgstore.Store }

func (p pgSink) Lead(ctx context.Context, name string) (Lease, error) {
	l, err := p.Store.Lead(ctx, name)
	if err != nil {
		return nil, err // not a typed nil in an interface
	}
	return l, nil
}

// Options configure an Archiver.
type Options struct {
	Config config.Archiver
	// Writers bounds concurrent COPY transactions of Backfill (default 2); keep it below the
	// pool's cap.
	Writers int
	Logger  *slog.Logger
	// Metrics may be nil (commands that do not serve /metrics).
	Metrics *Metrics
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
	// Indices and Boundary are what Retention needs besides the stores above (*esstore.Store and
	// *pgstore.Store); without them Retention fails and Run applies no retention.
	Indices  Indices
	Boundary Boundary
	// RetentionGrace is Retention's wait between moving the cold boundary and deleting, when
	// Run applies Config.RetentionAfter.
	RetentionGrace time.Duration
	// PartitionsAhead is how far past now Run keeps day partitions created (ingest.max_future_skew:
	// the newest timestamp ingest accepts). Days the feed brings are created on demand anyway.
	PartitionsAhead time.Duration
}

// Archiver runs the archive's operations against one Elasticsearch prefix and one PostgreSQL
// schema. Run is meant to be called once; Verify, Status and Backfill may run concurrently with
// it and with each other.
type Archiver struct {
	es      Source
	pg      Sink
	cfg     config.Archiver
	writers int
	logger  *slog.Logger
	metrics *Metrics
	now     func() time.Time
	lease   string

	indices         Indices
	boundary        Boundary
	retentionGrace  time.Duration
	partitionsAhead time.Duration

	stopOnce sync.Once
	stop     chan struct{} // closed by Stop: finish the current batch and return
	done     chan struct{} // closed when Run returns
	mu       sync.Mutex
	hardStop context.CancelFunc // cancels Run's context when Stop's deadline passes

	lag    lagState
	errLog *resilience.Throttle // repeated error lines, once a minute per message
	// positions are the checkpoints as this process last read or moved them while it led (nil:
	// it never led, or another process leads now). Only Run's goroutine uses them.
	positions map[shardKey]int64
}

// New builds an Archiver.
func New(es Source, pg Sink, opts Options) *Archiver {
	a := &Archiver{
		es: es, pg: pg, cfg: opts.Config, writers: opts.Writers,
		logger: opts.Logger, metrics: opts.Metrics, now: opts.Now,
		indices: opts.Indices, boundary: opts.Boundary, retentionGrace: opts.RetentionGrace, partitionsAhead: opts.PartitionsAhead,
		lease: "archiver:" + es.Prefix(),
		stop:  make(chan struct{}), done: make(chan struct{}),
	}
	if a.logger == nil {
		a.logger = slog.New(slog.DiscardHandler)
	}
	if a.metrics == nil {
		a.metrics = NewMetrics(nil, nil)
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.writers < 1 {
		a.writers = 2
	}
	if a.cfg.BatchSize < 1 {
		a.cfg.BatchSize = 5000
	}
	if a.cfg.PollInterval <= 0 {
		a.cfg.PollInterval = time.Second
	}
	if a.cfg.BackoffMax <= 0 {
		a.cfg.BackoffMax = 30 * time.Second
	}
	if a.cfg.VerifyBucket <= 0 {
		a.cfg.VerifyBucket = time.Hour
	}
	a.metrics.setLag(&a.lag, a.now)
	a.errLog = &resilience.Throttle{Every: time.Minute, Now: a.now}
	return a
}

// Claim records that the PostgreSQL schema archives this archiver's index prefix, or fails
// (matching pgstore.ErrOtherPrefix, naming postgres.schema) when it archives another one. Every
// command that reads or writes the archive calls it first.
func (a *Archiver) Claim(ctx context.Context) error {
	return a.pg.ClaimPrefix(ctx, a.es.Prefix())
}
