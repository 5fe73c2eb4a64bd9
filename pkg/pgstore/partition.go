package pgstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The archive's events table is partitioned by range of ts, one partition per UTC day, named
// events_pYYYYMMDD (mappings/postgres/004_partitioned_events.sql). Each partition carries its own
// UNIQUE (id): a partition is one day, so that index enforces the archive's identity, (id, UTC
// day), the same identity Elasticsearch's daily indices enforce. There is no DEFAULT partition:
// a row whose day has no partition fails its statement (and so its whole batch) instead of being
// parked or dropped. Partitions are created before the rows that need them are written.

// Day is the UTC day holding t: its midnight.
func Day(t time.Time) time.Time { return t.UTC().Truncate(24 * time.Hour) }

// PartitionName names the partition holding the events of day's UTC day.
func PartitionName(day time.Time) string { return "events_p" + Day(day).Format("20060102") }

// partitionCache remembers the days known to have a partition, so that writers ask the database
// only about new days. Prune forgets the days it drops; a write that finds no partition anyway
// (dropped by another process) forgets the cache (see forgetOnMissing).
type partitionCache struct {
	mu   sync.Mutex
	days map[time.Time]bool
}

func (c *partitionCache) missing(days []time.Time) []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []time.Time
	for _, d := range days {
		d = Day(d)
		if !c.days[d] && !slices.ContainsFunc(out, d.Equal) {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b time.Time) int { return a.Compare(b) })
	return out
}

func (c *partitionCache) add(day time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.days == nil {
		c.days = map[time.Time]bool{}
	}
	c.days[Day(day)] = true
}

func (c *partitionCache) forget(day time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.days, Day(day))
}

func (c *partitionCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.days = nil
}

// EnsurePartitions creates the day partitions of the given instants' UTC days that do not exist
// yet. It is idempotent and safe to run from several processes at once.
func (s *Store) EnsurePartitions(ctx context.Context, times ...time.Time) error {
	return s.ensurePartitions(ctx, s.pool, times)
}

// ensurePartitions creates missing partitions on db (a pool, or the lease's connection outside
// any transaction), one short transaction per day.
//
// A partition is created as a standalone table and then attached: ATTACH PARTITION takes a SHARE
// UPDATE EXCLUSIVE lock on events, which readers and writers do not wait for, where CREATE TABLE
// … PARTITION OF would take ACCESS EXCLUSIVE and queue every query behind any long one. An
// advisory lock per schema serialises creators (two archivers, backfill, import), and the
// existence check under it makes the race harmless. lock_timeout bounds the wait for the lock on
// events; the caller's batch fails and is retried, nothing is lost.
func (s *Store) ensurePartitions(ctx context.Context, db beginner, times []time.Time) error {
	for _, day := range s.parts.missing(times) {
		name := PartitionName(day)
		err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '10s'"); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", AdvisoryKey("spillway-partition:"+s.cfg.Schema)); err != nil {
				return err
			}
			var exists bool
			if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", name).Scan(&exists); err != nil {
				return err
			}
			if exists {
				return nil
			}
			ident := pgx.Identifier{name}.Sanitize()
			from, to := day.Format("2006-01-02 15:04:05+00"), day.Add(24*time.Hour).Format("2006-01-02 15:04:05+00")
			for _, stmt := range []string{
				// INCLUDING ALL copies defaults, constraints, storage and (PostgreSQL 14+) the
				// payload's lz4 compression; the inherited indexes are created by ATTACH.
				"CREATE TABLE " + ident + " (LIKE events INCLUDING ALL EXCLUDING INDEXES)",
				"ALTER TABLE " + ident + " ADD CONSTRAINT " + pgx.Identifier{name + "_id_key"}.Sanitize() + " UNIQUE (id)",
				"ALTER TABLE events ATTACH PARTITION " + ident + " FOR VALUES FROM ('" + from + "') TO ('" + to + "')",
			} {
				if _, err := tx.Exec(ctx, stmt); err != nil {
					return err
				}
			}
			s.logger.Info("created archive partition", "partition", name, "schema", s.cfg.Schema)
			return nil
		})
		if err != nil {
			return wrap("create partition "+name, err)
		}
		s.parts.add(day)
	}
	return nil
}

// forgetOnMissing drops the partition cache when err says a row found no partition: a partition
// the cache knew was dropped by another process (prune), and the next attempt must create it.
func (s *Store) forgetOnMissing(err error) {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23514" && strings.Contains(pgErr.Message, "no partition") {
		s.parts.reset()
	}
}

// Partition is one day partition of the archive.
type Partition struct {
	Name string
	Day  time.Time
	// Bytes is the partition's size on disk: heap, TOAST and indexes.
	Bytes int64
	// Rows is the planner's estimate (-1 before the first ANALYZE).
	Rows int64
}

// Partitions lists the day partitions of events, oldest first. Partitions not named
// events_pYYYYMMDD (made by hand) are listed with a zero Day.
func (s *Store) Partitions(ctx context.Context) ([]Partition, error) {
	rows, err := s.pool.Query(ctx, `SELECT c.relname, pg_total_relation_size(c.oid), c.reltuples::bigint
		FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'events'::regclass ORDER BY c.relname`)
	if err != nil {
		return nil, wrap("partitions", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Partition, error) {
		var p Partition
		if err := r.Scan(&p.Name, &p.Bytes, &p.Rows); err != nil {
			return p, err
		}
		if d, ok := strings.CutPrefix(p.Name, "events_p"); ok {
			if t, err := time.Parse("20060102", d); err == nil {
				p.Day = t
			}
		}
		return p, nil
	})
	if err != nil {
		return nil, wrap("partitions", err)
	}
	slices.SortStableFunc(out, func(a, b Partition) int { return a.Day.Compare(b.Day) })
	return out, nil
}

// DropPartition drops the partition of one UTC day, with every row in it. A partition already
// gone is not an error. Dropping takes an ACCESS EXCLUSIVE lock on events for a moment; a
// lock_timeout keeps it from queueing readers behind a long query (the call fails and can be
// retried).
func (s *Store) DropPartition(ctx context.Context, day time.Time) error {
	name := PartitionName(day)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '5s'"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", AdvisoryKey("spillway-partition:"+s.cfg.Schema)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{name}.Sanitize())
		return err
	})
	s.parts.forget(day)
	if err != nil {
		return wrap(fmt.Sprintf("drop partition %s", name), err)
	}
	return nil
}
