package archive

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/pgstore"
)

// Forgetting a client (a privacy request): every event of one clientId is removed from both
// stores and the erasure is recorded (who, when, how many).
//
// The order keeps the archive from bringing events back. Elasticsearch goes first, so that the
// archiver cannot read a forgotten event after PostgreSQL has dropped it; then PostgreSQL; then
// Forget waits until the running archiver's checkpoints have passed Elasticsearch's global
// checkpoints of after the deletion (every batch read before it has then committed), and deletes
// from PostgreSQL again, catching a batch that was in flight. Verification stays clean: neither
// store holds the events any more, counts and id digests agree.
//
// Events the client posts while Forget runs are not forgotten (revoke its key first); the report
// says how many remain.

// ClientIndex is the Elasticsearch side of Forget (*esstore.Store).
type ClientIndex interface {
	CountClient(ctx context.Context, clientID string) (int64, error)
	ClientDocs(ctx context.Context, clientID string, size int, fn func([]event.DocRef) error) error
	DeleteDocs(ctx context.Context, refs []event.DocRef) (int, error)
	Refresh(ctx context.Context) error
	Shards(ctx context.Context) ([]event.Shard, error)
}

// ClientArchive is the PostgreSQL side of Forget (*pgstore.Store).
type ClientArchive interface {
	CountClient(ctx context.Context, clientID string) (int64, error)
	DeleteClient(ctx context.Context, clientID string) (int64, error)
	StartErasure(ctx context.Context, clientID, by string) (int64, error)
	FinishErasure(ctx context.Context, id, esDeleted, pgDeleted int64) error
	Checkpoints(ctx context.Context) ([]pgstore.Checkpoint, error)
	Leader(ctx context.Context, name string) (pgstore.LeaderInfo, bool, error)
}

// ForgetRequest asks to forget one client.
type ForgetRequest struct {
	ClientID string
	// By names who asked (recorded with the erasure).
	By string
	// Apply deletes; without it Forget only counts.
	Apply bool
	// Wait bounds the wait for the running archiver (default 2 minutes).
	Wait time.Duration
}

// ForgetReport is the outcome of Forget.
type ForgetReport struct {
	ClientID string `json:"client_id"`
	By       string `json:"requested_by,omitempty"`
	Applied  bool   `json:"applied"`
	// Found: the client's events before; Deleted: removed; Remaining: found after (events the
	// client posted meanwhile).
	ESFound     int64 `json:"elasticsearch_found"`
	PGFound     int64 `json:"postgres_found"`
	ESDeleted   int64 `json:"elasticsearch_deleted"`
	PGDeleted   int64 `json:"postgres_deleted"`
	ESRemaining int64 `json:"elasticsearch_remaining"`
	PGRemaining int64 `json:"postgres_remaining"`
	// Erasure is the id of the record in archive_erasures.
	Erasure  int64         `json:"erasure,omitempty"`
	Duration time.Duration `json:"duration_ns"`
}

// ErrArchiverBehind means the running archiver did not pass the deletion within ForgetRequest.Wait:
// a batch read before it may still bring events back. The erasure stays unfinished; run it again.
var ErrArchiverBehind = errors.New("the archiver did not catch up with the deletion")

// Forget removes one client's events from both stores (see the comment at the top of this file).
func (a *Archiver) Forget(ctx context.Context, es ClientIndex, db ClientArchive, req ForgetRequest) (*ForgetReport, error) {
	start := time.Now()
	if req.ClientID == "" {
		return nil, errors.New("forget: a client id is required")
	}
	if req.Wait <= 0 {
		req.Wait = 2 * time.Minute
	}
	rep := &ForgetReport{ClientID: req.ClientID, By: req.By, Applied: req.Apply}
	var err error
	if rep.ESFound, err = es.CountClient(ctx, req.ClientID); err != nil {
		return nil, fmt.Errorf("forget: %w", err)
	}
	if rep.PGFound, err = db.CountClient(ctx, req.ClientID); err != nil {
		return nil, fmt.Errorf("forget: %w", err)
	}
	if !req.Apply {
		rep.ESRemaining, rep.PGRemaining = rep.ESFound, rep.PGFound
		return rep, nil
	}
	if rep.Erasure, err = db.StartErasure(ctx, req.ClientID, req.By); err != nil {
		return rep, fmt.Errorf("forget: %w", err)
	}
	a.logger.Info("forgetting a client", "erasure", rep.Erasure, "requested_by", req.By,
		"elasticsearch_found", rep.ESFound, "postgres_found", rep.PGFound)

	// 1. Elasticsearch.
	err = es.ClientDocs(ctx, req.ClientID, 5000, func(refs []event.DocRef) error {
		n, err := es.DeleteDocs(ctx, refs)
		rep.ESDeleted += int64(n)
		return err
	})
	if err == nil {
		err = es.Refresh(ctx)
	}
	if err != nil {
		return rep, fmt.Errorf("forget: elasticsearch: %w", err)
	}
	shards, err := es.Shards(ctx)
	if err != nil {
		return rep, fmt.Errorf("forget: %w", err)
	}

	// 2. PostgreSQL, then again once the archiver has passed the deletion.
	n, err := db.DeleteClient(ctx, req.ClientID)
	rep.PGDeleted += n
	if err != nil {
		return rep, fmt.Errorf("forget: postgres: %w", err)
	}
	if err := a.waitArchived(ctx, db, shards, req.Wait); err != nil {
		rep.Duration = time.Since(start)
		return rep, fmt.Errorf("forget: %w", err)
	}
	n, err = db.DeleteClient(ctx, req.ClientID)
	rep.PGDeleted += n
	if err != nil {
		return rep, fmt.Errorf("forget: postgres: %w", err)
	}

	if rep.ESRemaining, err = es.CountClient(ctx, req.ClientID); err != nil {
		return rep, fmt.Errorf("forget: %w", err)
	}
	if rep.PGRemaining, err = db.CountClient(ctx, req.ClientID); err != nil {
		return rep, fmt.Errorf("forget: %w", err)
	}
	if err := db.FinishErasure(ctx, rep.Erasure, rep.ESDeleted, rep.PGDeleted); err != nil {
		return rep, fmt.Errorf("forget: %w", err)
	}
	rep.Duration = time.Since(start)
	a.logger.Info("forgot a client", "erasure", rep.Erasure, "elasticsearch_deleted", rep.ESDeleted, "postgres_deleted", rep.PGDeleted,
		"elasticsearch_remaining", rep.ESRemaining, "postgres_remaining", rep.PGRemaining)
	return rep, nil
}

// waitArchived waits, while an archiver leads, until its checkpoints reach the given shards'
// global checkpoints; with no leader there is no batch in flight.
func (a *Archiver) waitArchived(ctx context.Context, db ClientArchive, shards []event.Shard, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if _, leading, err := db.Leader(ctx, a.lease); err != nil {
			return err
		} else if !leading {
			return nil
		}
		cps, err := db.Checkpoints(ctx)
		if err != nil {
			return err
		}
		at := map[shardKey]int64{}
		for _, c := range cps {
			at[shardKey{c.IndexUUID, c.Shard}] = c.SeqNo
		}
		behind := 0
		for _, sh := range shards {
			p, ok := at[shardKey{sh.IndexUUID, sh.Shard}]
			if !ok {
				p = -1
			}
			if p < sh.GlobalCheckpoint {
				behind++
			}
		}
		if behind == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w within %s (%d shards behind): run forget again", ErrArchiverBehind, limit, behind)
		}
		if !a.sleep(ctx, 200*time.Millisecond) {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
}
