package archive

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// StatusReport is what `archiver status` prints.
type StatusReport struct {
	Prefix string        `json:"prefix"`
	Leader *LeaderStatus `json:"leader"`
	Shards []ShardStatus `json:"shards"`
	// LagSeconds is the age (by ingestedAt) of the oldest visible event not yet archived.
	LagSeconds       float64    `json:"lag_seconds"`
	OldestUnarchived *time.Time `json:"oldest_unarchived,omitempty"`
	// BehindOps sums, over the shards, the operations between checkpoint and highest sequence
	// number.
	BehindOps      int64         `json:"behind_ops"`
	RowsArchived   int64         `json:"rows_archived"`
	RowsRepaired   int64         `json:"rows_repaired"`
	RowsBackfilled int64         `json:"rows_backfilled"`
	LastError      string        `json:"last_error,omitempty"`
	LastErrorAt    *time.Time    `json:"last_error_at,omitempty"`
	LastVerify     *VerifyStatus `json:"last_verify,omitempty"`
	// ElasticsearchError is set when Elasticsearch could not be read (positions only).
	ElasticsearchError string `json:"elasticsearch_error,omitempty"`
	// Archive describes the PostgreSQL archive's day partitions.
	Archive ArchiveStatus `json:"archive"`
	// Restores lists the times PostgreSQL was found behind Elasticsearch's retention log
	// (restored from an earlier point in time), with what could not be brought back.
	Restores []RestoreStatus `json:"restores,omitempty"`
}

// ArchiveStatus describes the archive's day partitions.
type ArchiveStatus struct {
	Partitions int `json:"partitions"`
	// EarliestDay and LatestDay are the oldest and newest UTC days with a partition: the archive
	// holds nothing older than EarliestDay (archive retention, archiver prune, dropped the rest).
	EarliestDay *time.Time `json:"earliest_day,omitempty"`
	LatestDay   *time.Time `json:"latest_day,omitempty"`
	// Bytes is the partitions' size on disk (heap, TOAST, indexes).
	Bytes int64 `json:"bytes"`
	// V1 is the move of a version-1 archive, while one is pending (archiver migrate).
	V1 *V1Status `json:"v1_migration,omitempty"`
}

// V1Status is the progress of a version-1 archive's move.
type V1Status struct {
	RowsMoved int64     `json:"rows_moved"`
	RowsLeft  int64     `json:"rows_left"`
	MovedTo   time.Time `json:"moved_to,omitzero"`
	StartedAt time.Time `json:"started_at"`
}

// LeaderStatus describes the session holding the lease.
type LeaderStatus struct {
	PID             int       `json:"pid"`
	ApplicationName string    `json:"application_name"`
	ClientAddr      string    `json:"client_addr"`
	Since           time.Time `json:"since"`
}

// ShardStatus is the archiver's position in one shard.
type ShardStatus struct {
	Index            string    `json:"index"`
	IndexUUID        string    `json:"index_uuid"`
	Shard            int       `json:"shard"`
	Checkpoint       int64     `json:"checkpoint"`
	GlobalCheckpoint *int64    `json:"global_checkpoint,omitempty"`
	MaxSeqNo         *int64    `json:"max_seq_no,omitempty"`
	Rows             int64     `json:"rows"`
	UpdatedAt        time.Time `json:"updated_at,omitzero"`
	// Gone: the checkpoint's index no longer exists (deleted, or recreated under a new UUID).
	Gone bool `json:"gone,omitempty"`
}

// VerifyStatus is the latest verification.
type VerifyStatus struct {
	At       time.Time `json:"at"`
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	Missing  int64     `json:"missing"`
	Extra    int64     `json:"extra"`
	Pending  int64     `json:"pending"`
	Repaired int64     `json:"repaired"`
}

// Status reads the archive's positions, lag, counts, last error and last verification. When
// Elasticsearch cannot be read it still reports what PostgreSQL knows.
func (a *Archiver) Status(ctx context.Context) (*StatusReport, error) {
	rep := &StatusReport{Prefix: a.es.Prefix(), Shards: []ShardStatus{}}
	cps, err := a.pg.Checkpoints(ctx)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	st, err := a.pg.State(ctx)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	if info, ok, err := a.pg.Leader(ctx, a.lease); err != nil {
		return nil, fmt.Errorf("status: %w", err)
	} else if ok {
		rep.Leader = &LeaderStatus{PID: info.PID, ApplicationName: info.ApplicationName, ClientAddr: info.ClientAddr, Since: info.Since}
	}
	rep.RowsRepaired, rep.RowsBackfilled = st.RowsRepaired, st.RowsBackfilled
	if st.LastError != "" {
		rep.LastError = st.LastError
		at := st.LastErrorAt
		rep.LastErrorAt = &at
	}
	if v := st.LastVerify; v != nil {
		rep.LastVerify = &VerifyStatus{At: v.At, From: v.From, To: v.To, Missing: v.Missing, Extra: v.Extra, Pending: v.Pending, Repaired: v.Repaired}
	}
	if rep.Archive, err = a.archiveStatus(ctx); err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	restores, err := a.pg.Restores(ctx)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	rep.Restores = restoreStatus(restores)
	pos := map[shardKey]int{}
	for _, c := range cps {
		rep.RowsArchived += c.Rows
		pos[shardKey{c.IndexUUID, c.Shard}] = len(rep.Shards)
		rep.Shards = append(rep.Shards, ShardStatus{Index: c.IndexName, IndexUUID: c.IndexUUID, Shard: c.Shard,
			Checkpoint: c.SeqNo, Rows: c.Rows, UpdatedAt: c.UpdatedAt, Gone: true})
	}
	shards, err := a.es.Shards(ctx)
	if err != nil {
		rep.ElasticsearchError = err.Error()
		for i := range rep.Shards {
			rep.Shards[i].Gone = false // unknown
		}
		return rep, nil
	}
	var oldest time.Time
	for _, sh := range shards {
		gcp, maxSeq := sh.GlobalCheckpoint, sh.MaxSeqNo
		i, ok := pos[shardKey{sh.IndexUUID, sh.Shard}]
		if !ok {
			i = len(rep.Shards)
			rep.Shards = append(rep.Shards, ShardStatus{Index: sh.Index, IndexUUID: sh.IndexUUID, Shard: sh.Shard, Checkpoint: -1})
		}
		s := &rep.Shards[i]
		s.Gone, s.GlobalCheckpoint, s.MaxSeqNo = false, &gcp, &maxSeq
		if maxSeq <= s.Checkpoint {
			continue
		}
		rep.BehindOps += maxSeq - s.Checkpoint
		t, found, err := a.es.OldestAfter(ctx, sh.Index, sh.Shard, s.Checkpoint)
		if err != nil {
			rep.ElasticsearchError = err.Error()
			continue
		}
		if found && (oldest.IsZero() || t.Before(oldest)) {
			oldest = t
		}
	}
	if !oldest.IsZero() {
		rep.OldestUnarchived = &oldest
		rep.LagSeconds = max(0, a.now().Sub(oldest).Seconds())
	}
	return rep, nil
}

func (a *Archiver) archiveStatus(ctx context.Context) (ArchiveStatus, error) {
	var st ArchiveStatus
	parts, err := a.pg.Partitions(ctx)
	if err != nil {
		return st, err
	}
	st.Partitions = len(parts)
	for _, p := range parts {
		st.Bytes += p.Bytes
		if p.Day.IsZero() {
			continue
		}
		day := p.Day
		if st.EarliestDay == nil {
			st.EarliestDay = &day
		}
		st.LatestDay = &day
	}
	v1, ok, err := a.pg.V1(ctx)
	if err != nil {
		return st, err
	}
	if ok {
		st.V1 = &V1Status{RowsMoved: v1.RowsMoved, RowsLeft: v1.RowsLeft, StartedAt: v1.StartedAt}
		if !v1.MovedTS.IsZero() {
			st.V1.MovedTo = v1.MovedTS
		}
	}
	return st, nil
}

// WriteJSON writes the report as one JSON document.
func (r *StatusReport) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report for people.
func (r *StatusReport) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "prefix\t%s\n", r.Prefix)
	if r.Leader != nil {
		fmt.Fprintf(tw, "leader\tpid %d (%s %s) since %s\n", r.Leader.PID, r.Leader.ApplicationName, r.Leader.ClientAddr, r.Leader.Since.Format(time.RFC3339))
	} else {
		fmt.Fprintf(tw, "leader\tnone (no archiver is running)\n")
	}
	lag := "0s (caught up)"
	if r.OldestUnarchived != nil {
		lag = fmt.Sprintf("%s (oldest unarchived event ingested %s)", (time.Duration(r.LagSeconds) * time.Second).String(), r.OldestUnarchived.Format(time.RFC3339))
	}
	fmt.Fprintf(tw, "lag\t%s\n", lag)
	fmt.Fprintf(tw, "behind\t%d operations\n", r.BehindOps)
	fmt.Fprintf(tw, "rows\t%d archived, %d repaired, %d backfilled\n", r.RowsArchived, r.RowsRepaired, r.RowsBackfilled)
	if r.LastError != "" {
		at := ""
		if r.LastErrorAt != nil {
			at = r.LastErrorAt.Format(time.RFC3339) + " "
		}
		fmt.Fprintf(tw, "last error\t%s%s\n", at, r.LastError)
	} else {
		fmt.Fprintf(tw, "last error\tnone\n")
	}
	if v := r.LastVerify; v != nil {
		fmt.Fprintf(tw, "last verify\t%s: %s..%s missing %d, extra %d, pending %d, repaired %d\n", v.At.Format(time.RFC3339),
			v.From.Format(time.RFC3339), v.To.Format(time.RFC3339), v.Missing, v.Extra, v.Pending, v.Repaired)
	} else {
		fmt.Fprintf(tw, "last verify\tnever\n")
	}
	archive := fmt.Sprintf("%d day partitions, %s on disk", r.Archive.Partitions, bytesString(r.Archive.Bytes))
	if r.Archive.EarliestDay != nil {
		archive += fmt.Sprintf("; earliest day held %s, latest %s", r.Archive.EarliestDay.Format(time.DateOnly), r.Archive.LatestDay.Format(time.DateOnly))
	}
	fmt.Fprintf(tw, "archive\t%s\n", archive)
	for _, rs := range r.Restores {
		fmt.Fprintf(tw, "restore\t%s\n", rs)
	}
	if v := r.Archive.V1; v != nil {
		fmt.Fprintf(tw, "v1 migration\tpending: %d rows moved, about %d left (run archiver migrate)\n", v.RowsMoved, v.RowsLeft)
	}
	if r.ElasticsearchError != "" {
		fmt.Fprintf(tw, "elasticsearch\t%s\n", r.ElasticsearchError)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "INDEX\tSHARD\tCHECKPOINT\tGLOBAL CP\tMAX SEQ\tROWS\tUPDATED\tUUID")
	for _, s := range r.Shards {
		gcp, maxSeq := "-", "-"
		if s.GlobalCheckpoint != nil {
			gcp = fmt.Sprint(*s.GlobalCheckpoint)
		}
		if s.MaxSeqNo != nil {
			maxSeq = fmt.Sprint(*s.MaxSeqNo)
		}
		if s.Gone {
			gcp, maxSeq = "(gone)", "(gone)"
		}
		updated := "-"
		if !s.UpdatedAt.IsZero() {
			updated = s.UpdatedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%d\t%s\t%s\n", s.Index, s.Shard, s.Checkpoint, gcp, maxSeq, s.Rows, updated, s.IndexUUID)
	}
	return tw.Flush()
}

// bytesString formats a size in binary units.
func bytesString(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// WriteTable writes the verification for people: every bucket that is not clean, then totals.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FROM\tTO\tELASTICSEARCH\tPOSTGRESQL\tPENDING\tMISSING\tEXTRA\tAHEAD\tREPAIRED\tSTATUS")
	shown := 0
	for _, b := range r.Buckets {
		status := "ok"
		switch {
		case b.Missing-b.Repaired > 0 || b.Extra > 0:
			status = "MISMATCH"
		case b.Missing > 0:
			status = "repaired"
		case b.Pending > 0 || b.Ahead > 0:
			status = "ok (archiver behind)"
		}
		if len(r.Buckets) > 50 && status == "ok" {
			continue // long reports list only the interesting buckets
		}
		shown++
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", b.From.Format(time.RFC3339Nano), b.To.Format(time.RFC3339Nano),
			b.ES, b.PG, b.Pending, b.Missing, b.Extra, b.Ahead, b.Repaired, status)
	}
	if shown < len(r.Buckets) {
		fmt.Fprintf(tw, "(%d clean buckets not shown)\n", len(r.Buckets)-shown)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	verdict := "OK: both stores agree"
	if !r.OK() {
		verdict = "MISMATCH"
	}
	fmt.Fprintf(w, "\n%s — %s..%s in %s buckets: missing %d, extra %d, repaired %d, pending %d, ahead %d\n", verdict,
		r.From.Format(time.RFC3339Nano), r.To.Format(time.RFC3339Nano), r.Bucket, r.Missing, r.Extra, r.Repaired, r.Pending, r.Ahead)
	if len(r.MissingIDs) > 0 {
		fmt.Fprintf(w, "missing ids (sample): %s\n", strings.Join(r.MissingIDs, ", "))
	}
	if len(r.ExtraIDs) > 0 {
		fmt.Fprintf(w, "extra ids (sample): %s\n", strings.Join(r.ExtraIDs, ", "))
	}
	if len(r.Behind) > 0 {
		fmt.Fprintf(w, "shards not fully archived: %s\n", strings.Join(r.Behind, "; "))
	}
	return nil
}
