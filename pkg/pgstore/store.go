// Package pgstore is Spillway's PostgreSQL storage: a fixed, capped connection pool, the schema
// migrations from mappings/postgres, and the events table. It is the only package that imports pgx.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spillway/spillway/mappings"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/event"
)

// Store is a pool of at most cfg.MaxConns connections. It is safe for concurrent use; Close
// waits for borrowed connections to return.
type Store struct {
	pool   *pgxpool.Pool
	cfg    config.Postgres
	logger *slog.Logger
	parts  partitionCache
}

// Options adjust a pool for its role.
type Options struct {
	// MaxConns overrides cfg.MaxConns when positive (search uses its own, smaller cap).
	MaxConns int32
	// ReadOnly makes every session default to read-only transactions.
	ReadOnly bool
	// ApplicationName shows in pg_stat_activity.
	ApplicationName string
}

// Open creates the pool. It connects lazily: a database that is down does not stop the caller
// from starting, and connections come back by themselves when it returns.
func Open(ctx context.Context, cfg config.Postgres, opts Options, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	pc, err := pgxpool.ParseConfig(cfg.URL.Value())
	if err != nil {
		return nil, fmt.Errorf("postgres.url: %w", errors.New("cannot parse (value redacted)"))
	}
	pc.MaxConns = cfg.MaxConns
	if opts.MaxConns > 0 {
		pc.MaxConns = opts.MaxConns
	}
	pc.MinConns = 0
	pc.MaxConnIdleTime = 5 * time.Minute
	pc.MaxConnLifetime = time.Hour
	pc.HealthCheckPeriod = 30 * time.Second
	pc.ConnConfig.ConnectTimeout = cfg.ConnectTimeout
	rp := pc.ConnConfig.RuntimeParams
	rp["search_path"] = cfg.Schema
	if opts.ApplicationName != "" {
		rp["application_name"] = opts.ApplicationName
	}
	if cfg.StatementTimeout > 0 {
		rp["statement_timeout"] = strconv.FormatInt(cfg.StatementTimeout.Milliseconds(), 10)
	}
	if opts.ReadOnly {
		rp["default_transaction_read_only"] = "on"
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres pool: %w", err)
	}
	return &Store{pool: pool, cfg: cfg, logger: logger}, nil
}

// Close closes the pool after borrowed connections are returned.
func (s *Store) Close() { s.pool.Close() }

// MaxConns is the pool's hard cap.
func (s *Store) MaxConns() int32 { return s.pool.Config().MaxConns }

// Stat reports the pool's connections: total open and in use.
func (s *Store) Stat() (total, inUse int32) {
	st := s.pool.Stat()
	return st.TotalConns(), st.AcquiredConns()
}

// Ping returns nil when the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres ping: %w: %w", event.ErrUnavailable, err)
	}
	return nil
}

// Migrate applies the embedded schema files not yet recorded in schema_migrations, in order,
// each in its own transaction, under an advisory lock so concurrent starts apply them once.
func (s *Store) Migrate(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w: %w", event.ErrUnavailable, err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{s.cfg.Schema}.Sanitize()); err != nil {
		return fmt.Errorf("migrate: create schema: %w", err)
	}
	lock := AdvisoryKey("spillway-migrate:" + s.cfg.Schema)
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lock); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	defer func() { _, _ = conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", lock) }()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, m := range mappings.PostgresMigrations() {
		var done bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE name=$1)", m.Name).Scan(&done); err != nil {
			return fmt.Errorf("migrate %s: %w", m.Name, err)
		}
		if done {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (name) VALUES ($1)", m.Name)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate %s: %w", m.Name, err)
		}
		s.logger.Info("applied migration", "name", m.Name, "schema", s.cfg.Schema)
	}
	return nil
}

// CheckSchema returns nil when every embedded migration has been applied.
func (s *Store) CheckSchema(ctx context.Context) error {
	var n int
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM schema_migrations").Scan(&n); err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	if want := len(mappings.PostgresMigrations()); n < want {
		return fmt.Errorf("schema: %d of %d migrations applied", n, want)
	}
	return nil
}

// InsertEvent writes one event, ignoring one whose (id, UTC day) is already archived; for tools
// and tests. The archiver
// writes in COPY batches instead.
func (s *Store) InsertEvent(ctx context.Context, e event.Event) (inserted bool, err error) {
	var payload any
	if len(e.Payload) > 0 {
		payload = string(e.Payload)
	}
	if err := s.EnsurePartitions(ctx, e.Timestamp); err != nil {
		return false, err
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO events (id, client_id, type, ts, ingested_at, payload)
		VALUES ($1, $2, NULLIF($3, ''), $4, $5, $6::jsonb) ON CONFLICT DO NOTHING`,
		e.ID, e.ClientID, e.Type, event.Truncate(e.Timestamp), event.Truncate(e.IngestedAt), payload)
	if err != nil {
		s.forgetOnMissing(err)
		return false, wrap("insert event", err)
	}
	return tag.RowsAffected() == 1, nil
}

// Get reads one event by id, or event.ErrNotFound. An id may exist on several UTC days
// (the archive's identity is (id, day)): with a zero day it returns the newest (latest
// timestamp); otherwise the one of day's UTC day.
func (s *Store) Get(ctx context.Context, id string, day time.Time) (event.Event, error) {
	sql := `SELECT id, client_id, type, ts, ingested_at, payload::text FROM events_all WHERE id = $1`
	args := []any{id}
	if !day.IsZero() {
		sql += ` AND ts >= $2 AND ts < $3`
		args = append(args, Day(day), Day(day).Add(24*time.Hour))
	}
	rows, err := s.pool.Query(ctx, sql+` ORDER BY ts DESC LIMIT 1`, args...)
	if err != nil {
		return event.Event{}, wrap("get event", err)
	}
	e, err := pgx.CollectExactlyOneRow(rows, scanEvent)
	if errors.Is(err, pgx.ErrNoRows) {
		return e, fmt.Errorf("event %q: %w", id, event.ErrNotFound)
	}
	if err != nil {
		return e, wrap("get event", err)
	}
	return e, nil
}

// wrap adds context and marks connection-level failures as event.ErrUnavailable, so callers
// back off and retry rather than report a client error.
func wrap(op string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 08 (connection), 53 (resources), 57 (operator intervention, e.g. shutdown).
		switch pgErr.Code[:2] {
		case "08", "53", "57":
			return fmt.Errorf("%s: %w: %w", op, event.ErrUnavailable, err)
		}
		return fmt.Errorf("%s: %w", op, err)
	}
	if pgconn.SafeToRetry(err) || errors.Is(err, context.DeadlineExceeded) || isNetErr(err) {
		return fmt.Errorf("%s: %w: %w", op, event.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func isNetErr(err error) bool {
	var ce *pgconn.ConnectError
	return errors.As(err, &ce) || pgconn.Timeout(err)
}

// AdvisoryKey maps a name to a 64-bit PostgreSQL advisory lock key.
func AdvisoryKey(name string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	return int64(h.Sum64())
}
