package archive

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/pgstore"
)

// VerifyRequest selects what Verify compares.
type VerifyRequest struct {
	// From and To bound event @timestamps, [From, To), at microsecond precision.
	From, To time.Time
	// Bucket is the width of the compared time buckets (default: archiver.verify_bucket).
	Bucket time.Duration
	// Repair copies events missing in PostgreSQL from Elasticsearch (idempotently).
	Repair bool
}

// Report is the outcome of Verify. Elasticsearch's side counts only the documents the archiver
// has passed (_seq_no ≤ its checkpoint, read before anything else): those must be in
// PostgreSQL. Documents beyond the checkpoints are Pending, not missing.
type Report struct {
	From, To time.Time
	Bucket   time.Duration
	Buckets  []BucketReport
	// Missing: archived-by-checkpoint in Elasticsearch but not in PostgreSQL (found before repair).
	Missing int64
	// Extra: in PostgreSQL but in no event index.
	Extra int64
	// Pending: visible in Elasticsearch beyond the checkpoints (the archiver has not got there).
	Pending int64
	// Ahead: in PostgreSQL and Elasticsearch but beyond the checkpoints (backfilled or repaired).
	Ahead int64
	// Repaired: rows the repair inserted.
	Repaired int64
	// Behind lists shards of the compared indices whose checkpoint is below their highest
	// sequence number (work the archiver has not done yet, visible or not).
	Behind []string
	// Compared counts the ranges whose ids were compared because their counts or id digests
	// differed (0 when both stores agree everywhere).
	Compared int64
	// MissingIDs and ExtraIDs are samples (at most 20 each).
	MissingIDs []string
	ExtraIDs   []string
}

// BucketReport compares one time bucket.
type BucketReport struct {
	From, To time.Time
	ES       int64 // documents the archiver has passed
	ESHash   int64 // the sum of their id digests (event.IDHash)
	PG       int64 // rows
	Pending  int64
	Missing  int64
	Extra    int64
	Ahead    int64
	Repaired int64
}

// archived sums the buckets' archived-by-checkpoint Elasticsearch documents and id digests.
func (r *Report) archived() (docs, hash int64) {
	for _, b := range r.Buckets {
		docs += b.ES
		hash += b.ESHash
	}
	return docs, hash
}

// OK reports whether both stores agree: nothing missing (after repair) and nothing extra.
func (r *Report) OK() bool { return r.Missing-r.Repaired == 0 && r.Extra == 0 }

// Complete reports whether everything indexed in the range is archived: OK, nothing pending and
// no shard behind. A retention job may delete an index only when its day is Complete.
func (r *Report) Complete() bool { return r.OK() && r.Pending == 0 && len(r.Behind) == 0 }

const (
	maxBucketsPerQuery = 500
	// idLimit bounds the ids compared in memory at once; larger mismatching ranges are split.
	idLimit    = 20000
	splitWays  = 16
	sampleSize = 20
)

// verifyShard is one shard of an index overlapping the range, with the archiver's position.
type verifyShard struct {
	event.Shard
	day time.Time
	at  int64
}

type verifier struct {
	a      *Archiver
	req    VerifyRequest
	shards []verifyShard
	rep    *Report
}

// Verify compares Elasticsearch and PostgreSQL over [From, To) per time bucket: counts first,
// then, in buckets whose counts differ, ids (splitting large buckets until they are small enough
// to compare). With Repair it copies what is missing. Calling it for one UTC day checks exactly
// one daily index, which is what a retention job needs (Report.Complete).
func (a *Archiver) Verify(ctx context.Context, req VerifyRequest) (*Report, error) {
	req.From, req.To = truncate(req.From), truncate(req.To)
	if req.Bucket <= 0 {
		req.Bucket = a.cfg.VerifyBucket
	}
	req.Bucket = max(req.Bucket.Truncate(time.Microsecond), time.Microsecond)
	if !req.From.Before(req.To) {
		return nil, fmt.Errorf("verify: --from %s must be before --to %s", req.From.Format(time.RFC3339), req.To.Format(time.RFC3339))
	}
	if n := req.To.Sub(req.From) / req.Bucket; n > 1_000_000 {
		return nil, fmt.Errorf("verify: %d buckets; use a wider bucket or a shorter range", n)
	}
	v := &verifier{a: a, req: req, rep: &Report{From: req.From, To: req.To, Bucket: req.Bucket}}
	// Checkpoints first: every row at or below them was committed before this read, so the
	// PostgreSQL reads that follow see it.
	cps, err := a.pg.Checkpoints(ctx)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	pos := map[shardKey]int64{}
	for _, c := range cps {
		pos[shardKey{c.IndexUUID, c.Shard}] = c.SeqNo
	}
	shards, err := a.es.Shards(ctx)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	for _, sh := range shards {
		day, ok := a.es.DayOf(sh.Index)
		if !ok || !day.Before(req.To) || !day.Add(24*time.Hour).After(req.From) {
			continue
		}
		at, ok := pos[shardKey{sh.IndexUUID, sh.Shard}]
		if !ok {
			at = -1
		}
		v.shards = append(v.shards, verifyShard{Shard: sh, day: day, at: at})
		if sh.MaxSeqNo > at {
			v.rep.Behind = append(v.rep.Behind, fmt.Sprintf("%s[%d] at %d of %d", sh.Index, sh.Shard, at, sh.MaxSeqNo))
		}
	}

	buckets := dayBuckets(req.From, req.To, req.Bucket)
	for len(buckets) > 0 {
		n := min(len(buckets), maxBucketsPerQuery)
		chunk := buckets[:n]
		buckets = buckets[n:]
		counts, err := v.count(ctx, chunk)
		if err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		for i, r := range chunk {
			b := BucketReport{From: r.From, To: r.To, ES: counts[i].es, ESHash: counts[i].esHash, PG: counts[i].pg, Pending: counts[i].pending}
			if counts[i].differ() {
				if err := v.drill(ctx, r, &b); err != nil {
					return nil, fmt.Errorf("verify: %w", err)
				}
			}
			v.rep.Pending += b.Pending
			v.rep.Missing += b.Missing
			v.rep.Extra += b.Extra
			v.rep.Ahead += b.Ahead
			v.rep.Repaired += b.Repaired
			v.rep.Buckets = append(v.rep.Buckets, b)
		}
	}
	return v.rep, nil
}

// dayBuckets cuts [from, to) into buckets of width bucket that never straddle a UTC midnight: an
// event's identity is (id, UTC day), so inside one bucket an id names one event in either store
// and comparing ids is exact.
func dayBuckets(from, to time.Time, bucket time.Duration) []event.Range {
	var out []event.Range
	for t := from; t.Before(to); {
		end := minTime(minTime(t.Add(bucket), to), t.Truncate(24*time.Hour).Add(24*time.Hour))
		out = append(out, event.Range{From: t, To: end})
		t = end
	}
	return out
}

// bucketCount compares one range: the archived-by-checkpoint documents in Elasticsearch and the
// rows in PostgreSQL, by number and by the sum of their id digests (event.IDHash), so that a
// missing and an extra event in the same range do not cancel out.
type bucketCount struct{ es, pg, pending, esHash, pgHash int64 }

// differ says the range needs a closer look: its ids are compared.
func (c bucketCount) differ() bool { return c.es != c.pg || c.esHash != c.pgHash }

// count counts each range on both sides: in Elasticsearch per shard, the part at or below the
// shard's checkpoint and the rest (pending).
func (v *verifier) count(ctx context.Context, ranges []event.Range) ([]bucketCount, error) {
	out := make([]bucketCount, len(ranges))
	for _, sh := range v.shards {
		var idx []int
		var sub []event.Range
		for i, r := range ranges {
			if sh.day.Before(r.To) && sh.day.Add(24*time.Hour).After(r.From) {
				idx = append(idx, i)
				sub = append(sub, r)
			}
		}
		if len(sub) == 0 {
			continue
		}
		counts, err := v.a.es.CountShard(ctx, sh.Index, sh.Shard.Shard, sh.at, sub)
		if err != nil {
			return nil, err
		}
		for j, c := range counts {
			out[idx[j]].es += c.UpTo
			out[idx[j]].esHash += c.UpToHash
			out[idx[j]].pending += c.Total - c.UpTo
		}
	}
	pgRanges := make([]event.Range, len(ranges))
	for i, r := range ranges {
		pgRanges[i] = event.Range{From: r.From, To: r.To}
	}
	pg, err := v.a.pg.CountRanges(ctx, pgRanges)
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].pg, out[i].pgHash = pg[i].N, pg[i].Hash
	}
	return out, nil
}

// drill narrows a mismatching range: small enough, it compares ids; otherwise it splits the
// range and recurses into the parts whose counts differ.
func (v *verifier) drill(ctx context.Context, r event.Range, b *BucketReport) error {
	width := r.To.Sub(r.From)
	var c bucketCount
	if width <= splitWays*time.Microsecond {
		return v.compareIDs(ctx, r, b, 10*idLimit)
	}
	counts, err := v.count(ctx, []event.Range{r})
	if err != nil {
		return err
	}
	c = counts[0]
	if c.es <= idLimit && c.pg <= idLimit {
		return v.compareIDs(ctx, r, b, idLimit)
	}
	step := max((width / splitWays).Truncate(time.Microsecond), time.Microsecond)
	var parts []event.Range
	for t := r.From; t.Before(r.To); t = t.Add(step) {
		parts = append(parts, event.Range{From: t, To: minTime(t.Add(step), r.To)})
	}
	counts, err = v.count(ctx, parts)
	if err != nil {
		return err
	}
	for i, p := range parts {
		if counts[i].differ() {
			if err := v.drill(ctx, p, b); err != nil {
				return err
			}
		}
	}
	return nil
}

// compareIDs compares the ids of one range: archived-by-checkpoint ids absent from PostgreSQL
// are missing; PostgreSQL ids absent from that set are extra unless Elasticsearch has them
// beyond the checkpoint (ahead).
func (v *verifier) compareIDs(ctx context.Context, r event.Range, b *BucketReport, limit int) error {
	v.rep.Compared++
	var esIDs []string
	for _, sh := range v.shards {
		if !sh.day.Before(r.To) || !sh.day.Add(24*time.Hour).After(r.From) {
			continue
		}
		ids, err := v.a.es.ShardIDs(ctx, sh.Index, sh.Shard.Shard, sh.at, r, limit)
		if err != nil {
			return err
		}
		esIDs = append(esIDs, ids...)
	}
	sort.Strings(esIDs)
	esIDs = slices.Compact(esIDs)
	pgIDs, err := v.a.pg.IDsInRange(ctx, event.Range{From: r.From, To: r.To}, limit)
	if err != nil {
		return err
	}
	if !sort.StringsAreSorted(pgIDs) {
		return errors.New("postgres returned ids out of byte order (events.id must be COLLATE \"C\")")
	}
	var missing, extra []string
	i, j := 0, 0
	for i < len(esIDs) || j < len(pgIDs) {
		switch {
		case j == len(pgIDs) || (i < len(esIDs) && esIDs[i] < pgIDs[j]):
			missing = append(missing, esIDs[i])
			i++
		case i == len(esIDs) || pgIDs[j] < esIDs[i]:
			extra = append(extra, pgIDs[j])
			j++
		default:
			i++
			j++
		}
	}
	// Extra candidates that Elasticsearch has after all were archived ahead of the checkpoint.
	for len(extra) > 0 {
		n := min(len(extra), 1000)
		docs, err := v.a.es.DocsByID(ctx, extra[:n], r)
		if err != nil {
			return err
		}
		found := make(map[string]bool, len(docs))
		for _, d := range docs {
			found[d.ID] = true
		}
		for _, id := range extra[:n] {
			if found[id] {
				b.Ahead++
				continue
			}
			b.Extra++
			if len(v.rep.ExtraIDs) < sampleSize {
				v.rep.ExtraIDs = append(v.rep.ExtraIDs, id)
			}
		}
		extra = extra[n:]
	}
	b.Missing += int64(len(missing))
	for _, id := range missing {
		if len(v.rep.MissingIDs) >= sampleSize {
			break
		}
		v.rep.MissingIDs = append(v.rep.MissingIDs, id)
	}
	if v.req.Repair && len(missing) > 0 {
		n, err := v.a.repair(ctx, missing, r)
		b.Repaired += n
		if err != nil {
			return err
		}
	}
	return nil
}

// repair copies the documents with the ids and an @timestamp in r from Elasticsearch into
// PostgreSQL.
func (a *Archiver) repair(ctx context.Context, ids []string, r event.Range) (int64, error) {
	var inserted int64
	for len(ids) > 0 {
		n := min(len(ids), 1000)
		rows, err := a.es.DocsByID(ctx, ids[:n], r)
		if err != nil {
			return inserted, fmt.Errorf("repair: %w", err)
		}
		for _, e := range rows {
			if err := storable(e); err != nil {
				return inserted, fmt.Errorf("repair: %w", err)
			}
		}
		res, err := a.pg.CopyEvents(ctx, pgstore.OriginRepair, rows)
		if err != nil {
			return inserted, fmt.Errorf("repair: %w", err)
		}
		inserted += res.Inserted
		a.metrics.rows.WithLabelValues("repair").Add(float64(res.Inserted))
		a.metrics.copyBytes.Add(float64(res.Bytes))
		ids = ids[n:]
	}
	return inserted, nil
}

// VerifyAndRecord runs Verify, stores the outcome for status and sets the mismatch metric.
func (a *Archiver) VerifyAndRecord(ctx context.Context, req VerifyRequest) (*Report, error) {
	rep, err := a.Verify(ctx, req)
	if err != nil {
		a.metrics.verifyRuns.WithLabelValues("error").Inc()
		return nil, err
	}
	result := "ok"
	if !rep.OK() {
		result = "mismatch"
	}
	a.metrics.verifyRuns.WithLabelValues(result).Inc()
	a.metrics.mismatches.WithLabelValues("missing").Set(float64(rep.Missing))
	a.metrics.mismatches.WithLabelValues("extra").Set(float64(rep.Extra))
	rec := pgstore.VerifyRecord{At: a.now().UTC(), From: rep.From, To: rep.To, Missing: rep.Missing, Extra: rep.Extra,
		Pending: rep.Pending, Repaired: rep.Repaired}
	if err := a.pg.RecordVerify(ctx, rec); err != nil {
		a.logger.Warn("record verify", "err", err)
	}
	return rep, nil
}

// periodicVerify checks the recent window from inside Run (on the leader only).
func (a *Archiver) periodicVerify(ctx context.Context) {
	to := a.now()
	rep, err := a.VerifyAndRecord(ctx, VerifyRequest{From: to.Add(-a.cfg.VerifyWindow), To: to})
	if err != nil {
		a.fail(ctx, "verify", err)
		return
	}
	if !rep.OK() {
		a.logger.Error("verify found a mismatch", "from", rep.From, "to", rep.To, "missing", rep.Missing,
			"extra", rep.Extra, "missing_ids", rep.MissingIDs, "extra_ids", rep.ExtraIDs)
		return
	}
	a.logger.Info("verified", "from", rep.From, "to", rep.To, "pending", rep.Pending, "ahead", rep.Ahead)
}

func truncate(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
