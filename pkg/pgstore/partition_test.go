package pgstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/pgstore"
)

// migrated opens a store on a fresh schema with every migration applied.
func migrated(t *testing.T) *pgstore.Store {
	t.Helper()
	return testenv.Archive(t, testenv.PG(t), pgstore.Options{ApplicationName: "spillway-test"})
}

func row(id string, ts time.Time) event.Event {
	return event.Event{ID: id, ClientID: "c-" + id, Timestamp: ts, IngestedAt: ts, Payload: []byte(`{"at":"` + ts.Format(time.RFC3339Nano) + `"}`)}
}

func countRows(t *testing.T, s *pgstore.Store, where string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := s.Pool().QueryRow(context.Background(), "SELECT count(*) FROM events_all "+where, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSchemaIsPartitionedByDayWithoutDefault(t *testing.T) {
	s := migrated(t)
	ctx := testenv.Context(t, time.Minute)
	var strategy, key string
	if err := s.Pool().QueryRow(ctx, `SELECT p.partstrat::text, pg_get_partkeydef(p.partrelid) FROM pg_partitioned_table p
		WHERE p.partrelid = 'events'::regclass`).Scan(&strategy, &key); err != nil {
		t.Fatal(err)
	}
	if strategy != "r" || key != "RANGE (ts)" {
		t.Fatalf("events is partitioned by %q %q, want RANGE (ts)", strategy, key)
	}
	var def int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_partitioned_table WHERE partrelid = 'events'::regclass AND partdefid <> 0`).Scan(&def); err != nil || def != 0 {
		t.Fatalf("default partition: %d %v", def, err)
	}
	day := time.Date(2026, 3, 4, 0, 0, 0, 0, time.UTC)
	if err := s.EnsurePartitions(ctx, day.Add(5*time.Hour)); err != nil {
		t.Fatal(err)
	}
	// The partition covers exactly the UTC day, has its own UNIQUE (id) and compresses payloads
	// with lz4 (PostgreSQL 15 from Debian is built with it).
	var bound, compression string
	var unique int
	if err := s.Pool().QueryRow(ctx, `SELECT pg_get_expr(c.relpartbound, c.oid),
			(SELECT count(*) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
			 WHERE i.indrelid = c.oid AND i.indisunique AND i.indnatts = 1 AND a.attname = 'id'),
			(SELECT attcompression::text FROM pg_attribute WHERE attrelid = c.oid AND attname = 'payload')
		FROM pg_class c WHERE c.oid = 'events_p20260304'::regclass`).Scan(&bound, &unique, &compression); err != nil {
		t.Fatal(err)
	}
	if bound != "FOR VALUES FROM ('2026-03-04 00:00:00+00') TO ('2026-03-05 00:00:00+00')" || unique != 1 || compression != "l" {
		t.Fatalf("partition: bound %q, unique id indexes %d, payload compression %q", bound, unique, compression)
	}
}

// One id on two UTC days is two events in the archive, as it is two documents in two daily
// indices of Elasticsearch; on one day it is one event, whatever its timestamp.
func TestIdentityIsIDAndUTCDay(t *testing.T) {
	s := migrated(t)
	ctx := testenv.Context(t, time.Minute)
	lastOfDay1 := time.Date(2026, 3, 4, 23, 59, 59, 999999000, time.UTC)
	firstOfDay2 := time.Date(2026, 3, 5, 0, 0, 0, 0, time.UTC)
	res, err := s.CopyEvents(ctx, pgstore.OriginBackfill, []event.Event{row("order-1", lastOfDay1), row("order-1", firstOfDay2)})
	if err != nil || res.Inserted != 2 {
		t.Fatalf("two days: inserted %d, %v; want 2", res.Inserted, err)
	}
	// Again, and with another timestamp on the first day: the same (id, day), nothing new.
	res, err = s.CopyEvents(ctx, pgstore.OriginRepair, []event.Event{row("order-1", lastOfDay1), row("order-1", firstOfDay2),
		row("order-1", lastOfDay1.Add(-time.Hour))})
	if err != nil || res.Inserted != 0 {
		t.Fatalf("repeat: inserted %d, %v; want 0", res.Inserted, err)
	}
	if n := countRows(t, s, "WHERE id = 'order-1'"); n != 2 {
		t.Fatalf("%d rows for order-1, want 2", n)
	}
	newest, err := s.Get(ctx, "order-1", time.Time{})
	if err != nil || !newest.Timestamp.Equal(firstOfDay2) {
		t.Fatalf("newest: %v %v, want %s", newest.Timestamp, err, firstOfDay2)
	}
	first, err := s.Get(ctx, "order-1", lastOfDay1)
	if err != nil || !first.Timestamp.Equal(lastOfDay1) {
		t.Fatalf("day 1: %v %v, want %s", first.Timestamp, err, lastOfDay1)
	}
	if _, err := s.Get(ctx, "order-1", firstOfDay2.Add(48*time.Hour)); !errors.Is(err, event.ErrNotFound) {
		t.Fatalf("another day: %v, want not found", err)
	}
	// The cold tier reads both, in (timestamp, id) order, and counts both.
	page, err := s.Page(ctx, event.PageQuery{Filter: event.Filter{ClientIDs: []string{"c-order-1"}}, Size: 10})
	if err != nil || len(page) != 2 || !page[0].Timestamp.Equal(lastOfDay1) || !page[1].Timestamp.Equal(firstOfDay2) {
		t.Fatalf("cold page: %+v %v", page, err)
	}
	if n, err := s.Count(ctx, event.Filter{ClientIDs: []string{"c-order-1"}}); err != nil || n != 2 {
		t.Fatalf("cold count %d %v", n, err)
	}
	// Verification's ranges split at midnight see one each.
	counts, err := s.CountRanges(ctx, []event.Range{{From: lastOfDay1.Truncate(24 * time.Hour), To: firstOfDay2}, {From: firstOfDay2, To: firstOfDay2.Add(time.Hour)}})
	if err != nil || counts[0].N != 1 || counts[1].N != 1 || counts[0].Hash != event.IDHash("order-1") {
		t.Fatalf("counts %+v %v", counts, err)
	}
	st, err := s.State(ctx)
	if err != nil || st.RowsBackfilled != 2 || st.RowsRepaired != 0 {
		t.Fatalf("state %+v %v", st, err)
	}
}

// Two archivers (two pools) creating the same partitions at once: every day exists once, no
// error, whichever wins.
func TestPartitionsOnDemandRace(t *testing.T) {
	cfg := testenv.PG(t)
	ctx := testenv.Context(t, 2*time.Minute)
	var stores [2]*pgstore.Store
	for i := range stores {
		stores[i] = testenv.Archive(t, cfg, pgstore.Options{ApplicationName: "spillway-test"})
	}
	// Past and future edges: ingest accepts max_past_age (30 days) back and max_future_skew ahead.
	now := time.Now().UTC()
	var times []time.Time
	for d := -31; d <= 2; d++ {
		times = append(times, now.Add(time.Duration(d)*24*time.Hour))
	}
	var wg sync.WaitGroup
	errs := make([]error, 2*len(stores))
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := stores[i%2]
			rows := make([]event.Event, len(times))
			for j, ts := range times {
				rows[j] = row(fmt.Sprintf("r%d-%d", i, j), ts)
			}
			_, errs[i] = s.CopyEvents(ctx, pgstore.OriginBackfill, rows)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	parts, err := stores[0].Partitions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != len(times) {
		t.Fatalf("%d partitions, want %d", len(parts), len(times))
	}
	for i, p := range parts {
		if want := pgstore.Day(times[i]); !p.Day.Equal(want) || p.Name != pgstore.PartitionName(want) {
			t.Fatalf("partition %d: %+v, want day %s", i, p, want)
		}
	}
	if n := countRows(t, stores[0], ""); n != int64(len(errs)*len(times)) {
		t.Fatalf("%d rows, want %d", n, len(errs)*len(times))
	}
}

// A row whose day has no partition is an error for its whole batch, never a dropped row: here
// the partition was dropped behind the writer's back (its cache still believes in it); the batch
// fails with nothing written, and the retry creates the partition and writes everything.
func TestMissingPartitionFailsTheBatch(t *testing.T) {
	cfg := testenv.PG(t)
	ctx := testenv.Context(t, time.Minute)
	open := func() *pgstore.Store {
		s, err := pgstore.Open(ctx, cfg, pgstore.Options{ApplicationName: "spillway-test"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		return s
	}
	writer, other := open(), open()
	day := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	if _, err := writer.CopyEvents(ctx, pgstore.OriginBackfill, []event.Event{row("a", day)}); err != nil {
		t.Fatal(err)
	}
	if err := other.DropPartition(ctx, day); err != nil {
		t.Fatal(err)
	}
	batch := []event.Event{row("b", day.Add(24*time.Hour)), row("c", day)}
	if _, err := writer.CopyEvents(ctx, pgstore.OriginBackfill, batch); err == nil || !strings.Contains(err.Error(), "no partition") {
		t.Fatalf("write into a dropped day: %v, want a no-partition error", err)
	}
	if n := countRows(t, writer, ""); n != 0 {
		t.Fatalf("%d rows written by the failed batch", n)
	}
	if res, err := writer.CopyEvents(ctx, pgstore.OriginBackfill, batch); err != nil || res.Inserted != 2 {
		t.Fatalf("retry: %+v %v", res, err)
	}
}

// Verifying one day reads that day's partition and no other: the planner prunes by the bounds,
// as the plan shows (a plan, not a timing).
func TestVerifyOfOneDayReadsOnePartition(t *testing.T) {
	s := migrated(t)
	ctx := testenv.Context(t, time.Minute)
	day := time.Date(2026, 3, 4, 0, 0, 0, 0, time.UTC)
	var rows []event.Event
	for d := -3; d <= 3; d++ {
		for i := range 50 {
			rows = append(rows, row(fmt.Sprintf("d%d-%d", d, i), day.Add(time.Duration(d)*24*time.Hour+time.Duration(i)*time.Minute)))
		}
	}
	if _, err := s.CopyEvents(ctx, pgstore.OriginBackfill, rows); err != nil {
		t.Fatal(err)
	}
	var buckets []event.Range
	for h := range 24 {
		buckets = append(buckets, event.Range{From: day.Add(time.Duration(h) * time.Hour), To: day.Add(time.Duration(h+1) * time.Hour)})
	}
	sql, args := pgstore.CountRangesQuery(buckets)
	for name, q := range map[string]struct {
		sql  string
		args []any
	}{
		"count ranges": {sql, args},
		"ids in range": {`SELECT id FROM events_all WHERE ts >= $1 AND ts < $2 ORDER BY id LIMIT $3`, []any{day, day.Add(24 * time.Hour), 20001}},
	} {
		var plan []map[string]any
		if err := s.Pool().QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+q.sql, q.args...).Scan(&plan); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		rels := relations(plan[0]["Plan"])
		if len(rels) == 0 {
			b, _ := json.Marshal(plan)
			t.Fatalf("%s: no relation in the plan: %s", name, b)
		}
		for _, r := range rels {
			if r != pgstore.PartitionName(day) {
				b, _ := json.MarshalIndent(plan, "", " ")
				t.Fatalf("%s: the plan reads %v, want only %s:\n%s", name, rels, pgstore.PartitionName(day), b)
			}
		}
	}
	got, err := s.CountRanges(ctx, buckets)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, c := range got {
		n += c.N
	}
	if n != 50 {
		t.Fatalf("counted %d rows of the day, want 50", n)
	}
}

// relations lists the relations a JSON plan node and its children scan.
func relations(node any) []string {
	m, ok := node.(map[string]any)
	if !ok {
		return nil
	}
	var out []string
	if r, ok := m["Relation Name"].(string); ok {
		out = append(out, r)
	}
	if kids, ok := m["Plans"].([]any); ok {
		for _, k := range kids {
			out = append(out, relations(k)...)
		}
	}
	return out
}

// One schema archives one index prefix; a second prefix is refused with a message naming
// postgres.schema, and search's boundary read refuses it too.
func TestOneSchemaOnePrefix(t *testing.T) {
	s := migrated(t)
	ctx := testenv.Context(t, time.Minute)
	for range 2 {
		if err := s.ClaimPrefix(ctx, "events"); err != nil {
			t.Fatal(err)
		}
	}
	err := s.ClaimPrefix(ctx, "other")
	if !errors.Is(err, pgstore.ErrOtherPrefix) || !strings.Contains(err.Error(), "postgres.schema") || !strings.Contains(err.Error(), `"events"`) {
		t.Fatalf("second prefix: %v", err)
	}
	if _, _, err := s.ColdBoundary(ctx, "other"); !errors.Is(err, pgstore.ErrOtherPrefix) {
		t.Fatalf("boundary of another prefix: %v", err)
	}
	if _, ok, err := s.ColdBoundary(ctx, "events"); err != nil || ok {
		t.Fatalf("own boundary: %v %v", ok, err)
	}
}

// Retention drops a day partition with its rows; the archive then starts at the next day.
func TestDropPartition(t *testing.T) {
	s := migrated(t)
	ctx := testenv.Context(t, time.Minute)
	day := time.Date(2026, 3, 4, 0, 0, 0, 0, time.UTC)
	if _, err := s.CopyEvents(ctx, pgstore.OriginBackfill, []event.Event{row("x", day), row("y", day.Add(24*time.Hour))}); err != nil {
		t.Fatal(err)
	}
	if err := s.DropPartition(ctx, day); err != nil {
		t.Fatal(err)
	}
	if err := s.DropPartition(ctx, day); err != nil { // gone already: not an error
		t.Fatal(err)
	}
	parts, err := s.Partitions(ctx)
	if err != nil || len(parts) != 1 || !parts[0].Day.Equal(day.Add(24*time.Hour)) {
		t.Fatalf("partitions %+v %v", parts, err)
	}
	if n := countRows(t, s, ""); n != 1 {
		t.Fatalf("%d rows left, want 1", n)
	}
}

// Payloads written by the archive's batches are stored with the column's lz4 compression, on
// both paths: the feed's batches COPY straight into events, and rows that go through the staging
// table (repair, backfill, a batch with rows archived already) keep it only because the staging
// table carries it, since INSERT ... SELECT moves compressed values without recompressing them.
func TestArchivedPayloadsUseLZ4(t *testing.T) {
	s := migrated(t)
	ctx := testenv.Context(t, time.Minute)
	big := `{"items":[` + strings.Repeat(`{"sku":"SKU-10293","name":"Trail Running Shoe","qty":1},`, 100) + `{}]}`
	staged := row("big-staged", time.Date(2026, 3, 4, 5, 0, 0, 0, time.UTC))
	staged.Payload = []byte(big)
	if res, err := s.CopyEvents(ctx, pgstore.OriginBackfill, []event.Event{staged}); err != nil || !res.Staged {
		t.Fatalf("backfill: %+v %v", res, err)
	}
	direct := row("big-direct", time.Date(2026, 3, 4, 6, 0, 0, 0, time.UTC))
	direct.Payload = []byte(big)
	lease, err := s.Lead(ctx, "archiver:lz4")
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release()
	if res, err := lease.Commit(ctx, pgstore.Batch{IndexUUID: "u", IndexName: "i", From: -1, To: 0, Rows: []event.Event{direct}}); err != nil || res.Staged {
		t.Fatalf("feed batch: %+v %v", res, err)
	}
	for _, id := range []string{"big-staged", "big-direct"} {
		var method string
		var stored, text int
		if err := s.Pool().QueryRow(ctx, `SELECT coalesce(pg_column_compression(payload), 'none'), pg_column_size(payload), octet_length(payload::text)
			FROM events WHERE id = $1`, id).Scan(&method, &stored, &text); err != nil {
			t.Fatal(err)
		}
		if method != "lz4" || stored >= text {
			t.Fatalf("%s: payload stored with %s, %d bytes for %d of text", id, method, stored, text)
		}
	}
}
