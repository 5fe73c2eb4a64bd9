package pgstore

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNotLeader means another process holds the archiver's lease.
var ErrNotLeader = errors.New("another archiver holds the lease")

// Lease is the archiver's leadership: a session-level advisory lock on one connection taken
// from the capped pool. The lock lives exactly as long as that session, so a process that
// dies (even by SIGKILL) or loses its connection loses the lease at once, and the batches of
// the leader run on the same connection: a batch can only commit while its writer still holds
// the lease. A Lease is not safe for concurrent use.
type Lease struct {
	store *Store
	conn  *pgxpool.Conn
	key   int64
}

// Lead tries to take the lease called name (per schema) without waiting. It returns
// ErrNotLeader when another session holds it.
func (s *Store) Lead(ctx context.Context, name string) (*Lease, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, wrap("lead", err)
	}
	key := s.leaseKey(name)
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&ok); err != nil {
		conn.Release()
		return nil, wrap("lead", err)
	}
	if !ok {
		conn.Release()
		return nil, ErrNotLeader
	}
	return &Lease{store: s, conn: conn, key: key}, nil
}

// leaseKey scopes a lease to the schema: advisory locks are per database, and several
// deployments (and every test) may share one database with different schemas.
func (s *Store) leaseKey(name string) int64 {
	return AdvisoryKey("spillway-lease:" + s.cfg.Schema + ":" + name)
}

// Alive returns nil while the lease's connection answers (and so still holds the lock).
func (l *Lease) Alive(ctx context.Context) error {
	if err := l.conn.Ping(ctx); err != nil {
		return wrap("lease", err)
	}
	return nil
}

// Checkpoints reads every checkpoint on the lease's connection.
func (l *Lease) Checkpoints(ctx context.Context) ([]Checkpoint, error) {
	return checkpoints(ctx, l.conn)
}

// Commit writes a batch and its checkpoint in one transaction on the lease's connection (see
// Batch), after creating the day partitions its rows need. It returns an error matching ErrCheckpointMoved, with nothing written, when the
// stored checkpoint is not b.From.
func (l *Lease) Commit(ctx context.Context, b Batch) (Result, error) {
	return l.store.commitBatch(ctx, l.conn, b)
}

// Release gives the lease up and returns the connection to the pool. A connection whose unlock
// cannot be confirmed is closed instead, so no pooled session keeps the lock.
func (l *Lease) Release() {
	if l.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var ok bool
	if err := l.conn.QueryRow(ctx, "SELECT pg_advisory_unlock($1)", l.key).Scan(&ok); err != nil || !ok {
		_ = l.conn.Conn().Close(ctx) // Release then destroys it before freeing its pool slot
	}
	l.conn.Release()
	l.conn = nil
}

// LeaderInfo describes the session holding a lease.
type LeaderInfo struct {
	PID             int
	ApplicationName string
	ClientAddr      string
	Since           time.Time // when its session started
}

// Leader reports who holds the lease called name; ok is false when nobody does.
func (s *Store) Leader(ctx context.Context, name string) (info LeaderInfo, ok bool, err error) {
	key := s.leaseKey(name)
	// A bigint advisory key shows in pg_locks split into classid (high half) and objid (low
	// half), with objsubid 1.
	hi, lo := int64(uint32(uint64(key)>>32)), int64(uint32(uint64(key)))
	err = s.pool.QueryRow(ctx, `SELECT a.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), ''), a.backend_start
		FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
		  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND l.classid::bigint = $1 AND l.objid::bigint = $2
		LIMIT 1`, hi, lo).Scan(&info.PID, &info.ApplicationName, &info.ClientAddr, &info.Since)
	if errors.Is(err, pgx.ErrNoRows) {
		return LeaderInfo{}, false, nil
	}
	if err != nil {
		return LeaderInfo{}, false, wrap("leader", err)
	}
	info.Since = info.Since.UTC()
	return info, true, nil
}

// Connections counts the sessions in pg_stat_activity with the application name: the pool
// cap as the server sees it.
func (s *Store) Connections(ctx context.Context, applicationName string) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, applicationName).Scan(&n); err != nil {
		return 0, wrap("connections", err)
	}
	return n, nil
}
