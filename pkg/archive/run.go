package archive

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/pgstore"
	"github.com/spillway/spillway/pkg/resilience"
)

// Run archives continuously until ctx ends or Stop is called: it applies the schema, takes the
// lease (or waits for it while another process holds it), and then, every poll interval, copies
// every shard's documents between its checkpoint and its global checkpoint in pages of
// BatchSize, each page committed with its checkpoint. Failures of either store are retried with
// capped exponential backoff; Run returns only when asked to.
func (a *Archiver) Run(ctx context.Context) error {
	defer close(a.done)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.mu.Lock()
	a.hardStop = cancel
	a.mu.Unlock()

	bo := a.newBackoff()
	for !a.stopping() {
		err := a.pg.Migrate(ctx)
		if err == nil {
			err = a.Claim(ctx)
		}
		if errors.Is(err, pgstore.ErrOtherPrefix) {
			a.logger.Error("refusing to archive", "err", err)
			return err // a configuration error: retrying cannot fix it
		}
		if err == nil {
			break
		}
		a.fail(ctx, "migrate", err)
		if !a.sleep(ctx, bo.Next()) {
			return nil
		}
	}
	a.logger.Info("archiver running", "lease", a.lease, "batch_size", a.cfg.BatchSize, "poll_interval", a.cfg.PollInterval.String())
	standby := false
	for !a.stopping() && ctx.Err() == nil {
		lease, err := a.pg.Lead(ctx, a.lease)
		if errors.Is(err, pgstore.ErrNotLeader) {
			if !standby {
				a.logger.Info("standing by: another archiver holds the lease", "lease", a.lease)
				standby = true
				a.positions = nil // the leader measures the lag now
				a.lag.set(time.Time{})
			}
			a.sleep(ctx, a.cfg.PollInterval)
			continue
		}
		if err != nil {
			a.fail(ctx, "lead", err)
			a.lagWithoutPostgres(ctx)
			a.sleep(ctx, bo.Next())
			continue
		}
		standby = false
		bo.Reset()
		a.logger.Info("leading", "lease", a.lease)
		a.metrics.leader.Set(1)
		err = a.lead(ctx, lease)
		lease.Release()
		a.metrics.leader.Set(0)
		if err != nil && ctx.Err() == nil {
			a.logger.Warn("lost the lease", "err", err)
			a.sleep(ctx, bo.Next())
		}
	}
	a.logger.Info("archiver stopped")
	return nil
}

// Stop asks Run to finish the batch in progress and return, and waits for it until ctx ends;
// then it cancels Run's context (the open transaction rolls back: nothing is lost) and returns
// ctx's error.
func (a *Archiver) Stop(ctx context.Context) error {
	a.stopOnce.Do(func() { close(a.stop) })
	select {
	case <-a.done:
		return nil
	case <-ctx.Done():
	}
	a.mu.Lock()
	if a.hardStop != nil {
		a.hardStop()
	}
	a.mu.Unlock()
	return ctx.Err()
}

func (a *Archiver) stopping() bool {
	select {
	case <-a.stop:
		return true
	default:
		return false
	}
}

// sleep waits d unless ctx ends or Stop is called; it reports whether the full time passed.
func (a *Archiver) sleep(ctx context.Context, d time.Duration) bool {
	return resilience.Sleep(ctx, d, a.stop)
}

// lead archives while the lease is held. It returns nil when stopped, or the error that ended
// the lease.
func (a *Archiver) lead(ctx context.Context, lease Lease) error {
	defer a.startRetention(ctx)()
	bo := a.newBackoff()
	var lastVerify, lastPartitions, lastRestore time.Time
	var restore *pgstore.Restore // the archive found behind the retention log, to repair
	for !a.stopping() && ctx.Err() == nil {
		start := time.Now()
		if time.Since(lastPartitions) >= partitionsEvery {
			if err := a.maintainPartitions(ctx); err != nil {
				a.fail(ctx, "partitions", err)
			} else {
				lastPartitions = time.Now()
			}
		}
		if restore == nil && time.Since(lastRestore) >= restoreEvery {
			r, err := a.checkRestore(ctx)
			if err != nil {
				a.fail(ctx, "restore check", err)
			} else {
				lastRestore, restore = time.Now(), r
			}
		}
		err := a.round(ctx, lease)
		if err == nil && restore != nil {
			// The round re-archived what Elasticsearch holds: the boundary may move over the
			// deleted days.
			if rerr := a.repairRestore(ctx, restore); rerr != nil {
				a.fail(ctx, "restore repair", rerr)
			} else {
				restore = nil
			}
		}
		switch {
		case errors.Is(err, pgstore.ErrCheckpointMoved):
			// Another writer committed this range (an operator, or a second process in a split
			// it cannot otherwise see): nothing of ours was written. Re-read and go on.
			a.metrics.batches.WithLabelValues("conflict").Inc()
			a.logger.Warn("checkpoint moved under us; re-reading", "err", err)
			a.sleep(ctx, a.cfg.PollInterval)
			continue
		case err != nil:
			if ctx.Err() != nil {
				return nil
			}
			a.fail(ctx, "archive", err)
			if aerr := lease.Alive(ctx); aerr != nil {
				a.lagWithoutPostgres(ctx)
				return fmt.Errorf("%w (lease: %v)", err, aerr)
			}
			a.sleep(ctx, bo.Next())
			continue
		}
		bo.Reset()
		if a.cfg.VerifyInterval > 0 && a.cfg.VerifyWindow > 0 && time.Since(lastVerify) >= a.cfg.VerifyInterval {
			lastVerify = time.Now()
			a.periodicVerify(ctx)
		}
		a.sleep(ctx, a.cfg.PollInterval-time.Since(start))
	}
	return nil
}

// partitionsEvery spaces the creation of partitions ahead of time: days come by the day.
const partitionsEvery = time.Hour

// maintainPartitions creates the day partitions from yesterday to PartitionsAhead past tomorrow,
// so that the feed's batches normally find their day's partition in place (older or newer days
// are still created on demand, before the batch that needs them), and updates the partition
// metrics.
func (a *Archiver) maintainPartitions(ctx context.Context) error {
	now := a.now().UTC()
	var days []time.Time
	for t := now.Add(-24 * time.Hour); !t.After(now.Add(a.partitionsAhead + 24*time.Hour)); t = t.Add(24 * time.Hour) {
		days = append(days, t)
	}
	if err := a.pg.EnsurePartitions(ctx, days...); err != nil {
		return err
	}
	parts, err := a.pg.Partitions(ctx)
	if err != nil {
		return err
	}
	a.metrics.setPartitions(parts)
	return nil
}

type shardKey struct {
	uuid  string
	shard int
}

// round archives every shard up to the global checkpoint it had when the round began.
func (a *Archiver) round(ctx context.Context, lease Lease) error {
	shards, err := a.es.Shards(ctx)
	if err != nil {
		return err
	}
	cps, err := lease.Checkpoints(ctx)
	if err != nil {
		return err
	}
	pos := make(map[shardKey]int64, len(cps))
	for _, c := range cps {
		pos[shardKey{c.IndexUUID, c.Shard}] = c.SeqNo
	}
	a.positions = pos // drain moves them as its batches commit
	at := func(sh event.Shard) int64 {
		if p, ok := pos[shardKey{sh.IndexUUID, sh.Shard}]; ok {
			return p
		}
		return -1
	}
	var work []event.Shard
	var indices []string
	for _, sh := range shards {
		if sh.GlobalCheckpoint > at(sh) {
			if len(work) == 0 || work[len(work)-1].Index != sh.Index {
				indices = append(indices, sh.Index)
			}
			work = append(work, sh)
		}
	}
	if len(work) > 0 {
		// The refresh must start after the global checkpoints were read: then every operation
		// at or below them is visible to the reads that follow.
		if err := a.es.RefreshIndices(ctx, indices...); err != nil {
			return err
		}
		for _, sh := range work {
			if a.stopping() {
				break
			}
			to, err := a.drain(ctx, lease, sh, at(sh))
			pos[shardKey{sh.IndexUUID, sh.Shard}] = to
			if err != nil {
				return err
			}
		}
	}
	a.measureLag(ctx, shards, at)
	return nil
}

// drain copies one shard from after `from` up to its global checkpoint, reading the next page
// while the previous one commits. It returns the position reached.
func (a *Archiver) drain(ctx context.Context, lease Lease, sh event.Shard, from int64) (int64, error) {
	type page struct {
		docs     []event.Sequenced
		from, to int64
		err      error
	}
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	pages := make(chan page, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(pages)
		after := from
		for after < sh.GlobalCheckpoint {
			docs, err := a.es.ReadShard(rctx, event.FeedQuery{Index: sh.Index, Shard: sh.Shard, After: after, UpTo: sh.GlobalCheckpoint, Size: a.cfg.BatchSize})
			p := page{docs: docs, from: after, to: sh.GlobalCheckpoint, err: err}
			if err == nil {
				p.err = checkOrder(docs, after, sh.GlobalCheckpoint)
			}
			// A short page exhausts the range (everything up to the global checkpoint is
			// visible); a full one ends at its last document.
			if p.err == nil && len(docs) >= a.cfg.BatchSize {
				p.to = docs[len(docs)-1].SeqNo
			}
			select {
			case pages <- p:
			case <-rctx.Done():
				return
			}
			if p.err != nil {
				return
			}
			after = p.to
		}
	}()
	pos := from
	for p := range pages {
		if p.err != nil {
			return pos, fmt.Errorf("read %s[%d] after %d: %w", sh.Index, sh.Shard, p.from, p.err)
		}
		a.metrics.docsRead.Add(float64(len(p.docs)))
		rows, err := eventsOf(p.docs)
		if err != nil {
			return pos, fmt.Errorf("read %s[%d] after %d: %w", sh.Index, sh.Shard, p.from, err)
		}
		start := time.Now()
		res, err := lease.Commit(ctx, pgstore.Batch{IndexUUID: sh.IndexUUID, IndexName: sh.Index, Shard: sh.Shard,
			From: p.from, To: p.to, Rows: rows})
		if err != nil {
			if !errors.Is(err, pgstore.ErrCheckpointMoved) {
				a.metrics.batches.WithLabelValues("error").Inc()
			}
			return pos, err
		}
		a.metrics.batchTime.Observe(time.Since(start).Seconds())
		a.metrics.batches.WithLabelValues("ok").Inc()
		a.metrics.rows.WithLabelValues("feed").Add(float64(res.Inserted))
		a.metrics.copyBytes.Add(float64(res.Bytes))
		if skipped := int64(len(rows)) - res.Inserted; skipped > 0 {
			a.logger.Info("ids already archived were skipped", "index", sh.Index, "shard", sh.Shard, "skipped", skipped)
		}
		pos = p.to
		if a.stopping() {
			break // finish the current batch and stop
		}
	}
	return pos, nil
}

// checkOrder guards the feed's contract: strictly increasing sequence numbers inside the range.
func checkOrder(docs []event.Sequenced, after, upTo int64) error {
	prev := after
	for _, d := range docs {
		if d.SeqNo <= prev || d.SeqNo > upTo {
			return fmt.Errorf("feed returned _seq_no %d after %d (range (%d, %d])", d.SeqNo, prev, after, upTo)
		}
		prev = d.SeqNo
	}
	return nil
}

// eventsOf checks the feed's events before they are written. An event the archive cannot store
// (no id, no client, a timestamp the store could not read) is an error, never skipped: the
// archiver stops on it (reported in status) rather than lose it.
func eventsOf(docs []event.Sequenced) ([]event.Event, error) {
	rows := make([]event.Event, len(docs))
	for i, d := range docs {
		if err := storable(d.Event); err != nil {
			return nil, fmt.Errorf("_seq_no %d: %w", d.SeqNo, err)
		}
		rows[i] = d.Event
	}
	return rows, nil
}

// storable checks what the archive needs of an event read from Elasticsearch.
func storable(e event.Event) error {
	switch {
	case e.ID == "" || e.ClientID == "":
		return fmt.Errorf("document %q has no id or clientId", e.ID)
	case e.Timestamp.IsZero() || e.IngestedAt.IsZero():
		return fmt.Errorf("document %s: @timestamp or ingestedAt missing or unreadable", e.ID)
	}
	return nil
}

// measureLag finds the oldest visible event beyond the checkpoints: the lag metric's source.
// Failures leave the previous value, which keeps ageing.
func (a *Archiver) measureLag(ctx context.Context, shards []event.Shard, at func(event.Shard) int64) {
	var oldest time.Time
	for _, sh := range shards {
		if sh.MaxSeqNo <= at(sh) {
			continue
		}
		t, ok, err := a.es.OldestAfter(ctx, sh.Index, sh.Shard, at(sh))
		if err != nil {
			return
		}
		if ok && (oldest.IsZero() || t.Before(oldest)) {
			oldest = t
		}
	}
	a.lag.set(oldest)
}

// lagWithoutPostgres keeps the lag metric true while PostgreSQL cannot be reached: nobody can
// move the checkpoints then, so the oldest event beyond the ones this process last knew is the
// oldest event not archived. It reads Elasticsearch alone. A process that never led knows no
// checkpoints and leaves the lag as it was.
func (a *Archiver) lagWithoutPostgres(ctx context.Context) {
	if a.positions == nil || ctx.Err() != nil {
		return
	}
	shards, err := a.es.Shards(ctx)
	if err != nil {
		return
	}
	a.measureLag(ctx, shards, func(sh event.Shard) int64 {
		if p, ok := a.positions[shardKey{sh.IndexUUID, sh.Shard}]; ok {
			return p
		}
		return -1
	})
}

// fail counts and logs a failed step (the same message at most once a minute) and records it
// for status, best effort.
func (a *Archiver) fail(ctx context.Context, op string, err error) {
	a.metrics.errors.WithLabelValues(op).Inc()
	msg := op + ": " + err.Error()
	now := a.now()
	if a.errLog.Allow(msg) {
		a.logger.Error("archiving step failed; backing off", "op", op, "err", err)
	}
	if ctx.Err() != nil {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_ = a.pg.RecordError(rctx, msg, now)
}

// newBackoff is the archiver's retry policy: doubling from 100 ms (or the poll interval, when
// shorter) up to archiver.backoff_max, with jitter so that a fleet of archivers does not retry
// in step.
func (a *Archiver) newBackoff() *resilience.Backoff {
	return &resilience.Backoff{Base: min(100*time.Millisecond, a.cfg.PollInterval), Max: a.cfg.BackoffMax, Jitter: true}
}
