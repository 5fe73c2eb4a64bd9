package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/pgstore"
)

func rowsN(prefix string, n int, ts time.Time) []event.Event {
	out := make([]event.Event, n)
	for i := range out {
		out[i] = event.Event{ID: fmt.Sprintf("%s-%04d", prefix, i), ClientID: "c", Type: "t",
			Timestamp: ts.Add(time.Duration(i) * time.Microsecond), IngestedAt: ts, Payload: []byte(`{"i":` + fmt.Sprint(i) + `}`)}
	}
	return out
}

func countEvents(t *testing.T, s *pgstore.Store) int64 {
	t.Helper()
	var n int64
	if err := s.Pool().QueryRow(context.Background(), "SELECT count(*) FROM events").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func checkpointOf(t *testing.T, s *pgstore.Store, uuid string, shard int) (pgstore.Checkpoint, bool) {
	t.Helper()
	cps, err := s.Checkpoints(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cps {
		if c.IndexUUID == uuid && c.Shard == shard {
			return c, true
		}
	}
	return pgstore.Checkpoint{}, false
}

func TestLeaseCommitMovesCheckpointWithRows(t *testing.T) {
	s := migrated(t)
	ctx := testenv.Context(t, time.Minute)
	lease, err := s.Lead(ctx, "archiver:x")
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release()
	ts := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

	res, err := lease.Commit(ctx, pgstore.Batch{IndexUUID: "u1", IndexName: "x-2026.03.01", Shard: 0, From: -1, To: 9, Rows: rowsN("a", 10, ts)})
	if err != nil || res.Inserted != 10 || res.Bytes == 0 || res.Staged {
		t.Fatalf("first batch (new rows: COPY straight into events): %+v %v", res, err)
	}
	cp, ok := checkpointOf(t, s, "u1", 0)
	if !ok || cp.SeqNo != 9 || cp.Rows != 10 || cp.IndexName != "x-2026.03.01" {
		t.Fatalf("checkpoint after first batch: %+v %v", cp, ok)
	}

	// A batch that starts where the checkpoint no longer is writes nothing.
	_, err = lease.Commit(ctx, pgstore.Batch{IndexUUID: "u1", IndexName: "x-2026.03.01", From: -1, To: 19, Rows: rowsN("b", 10, ts)})
	var moved *pgstore.CheckpointMovedError
	if !errors.Is(err, pgstore.ErrCheckpointMoved) || !errors.As(err, &moved) || moved.Got != 9 || moved.Want != -1 {
		t.Fatalf("stale batch: %v", err)
	}
	if n := countEvents(t, s); n != 10 {
		t.Fatalf("stale batch wrote rows: %d events", n)
	}

	// Ids already archived (by repair or backfill) are skipped, not duplicated or failed: the
	// straight COPY fails on the unique index, and the batch goes through the staging table
	// instead. The checkpoint counts only what it inserted.
	// An empty batch that exhausts a range still moves.
	overlap := append(rowsN("a", 5, ts), rowsN("c", 3, ts)...)
	res, err = lease.Commit(ctx, pgstore.Batch{IndexUUID: "u1", IndexName: "x-2026.03.01", From: 9, To: 30, Rows: overlap})
	if err != nil || res.Inserted != 3 || !res.Staged {
		t.Fatalf("overlapping batch: %+v %v", res, err)
	}
	if _, err := lease.Commit(ctx, pgstore.Batch{IndexUUID: "u1", IndexName: "x-2026.03.01", From: 30, To: 42}); err != nil {
		t.Fatal(err)
	}
	cp, _ = checkpointOf(t, s, "u1", 0)
	if cp.SeqNo != 42 || cp.Rows != 13 || countEvents(t, s) != 13 {
		t.Fatalf("checkpoint %+v, %d events", cp, countEvents(t, s))
	}
	if _, err := lease.Commit(ctx, pgstore.Batch{IndexUUID: "u1", From: 42, To: 41}); err == nil {
		t.Fatal("a checkpoint moved backwards")
	}
}

func TestFailedBatchLeavesNothing(t *testing.T) {
	s := migrated(t)
	ctx := testenv.Context(t, time.Minute)
	lease, err := s.Lead(ctx, "archiver:x")
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release()
	ts := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	if _, err := lease.Commit(ctx, pgstore.Batch{IndexUUID: "u", IndexName: "i", From: -1, To: 4, Rows: rowsN("ok", 5, ts)}); err != nil {
		t.Fatal(err)
	}
	// The last row is not JSON: COPY fails after the first rows were sent. Nothing of the batch
	// may stay, and the checkpoint must not move.
	bad := rowsN("bad", 5, ts)
	bad[4].Payload = []byte(`{"unterminated": `)
	if _, err := lease.Commit(ctx, pgstore.Batch{IndexUUID: "u", IndexName: "i", From: 4, To: 9, Rows: bad}); err == nil {
		t.Fatal("a batch with invalid JSON committed")
	}
	cp, _ := checkpointOf(t, s, "u", 0)
	if cp.SeqNo != 4 || cp.Rows != 5 || countEvents(t, s) != 5 {
		t.Fatalf("after failed batch: checkpoint %+v, %d events", cp, countEvents(t, s))
	}
	// The connection is usable again for the next batch.
	if _, err := lease.Commit(ctx, pgstore.Batch{IndexUUID: "u", IndexName: "i", From: 4, To: 9, Rows: rowsN("good", 5, ts)}); err != nil {
		t.Fatal(err)
	}
}

// Two writers committing the same range at once: the checkpoint row lock lets exactly one in.
func TestConcurrentCommitsOfOneRangeWriteOnce(t *testing.T) {
	cfg := testenv.PG(t)
	s := testenv.Archive(t, cfg, pgstore.Options{ApplicationName: "spillway-test"})
	ctx := testenv.Context(t, time.Minute)
	ts := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for round := 0; round < 5; round++ {
		from := int64(round*100 - 1)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		res := make([]pgstore.Result, 2)
		for w := 0; w < 2; w++ {
			// Different lease names so that both hold a connection and commit concurrently:
			// this exercises the safety net under the leadership.
			lease, err := s.Lead(ctx, fmt.Sprintf("w%d", w))
			if err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer lease.Release()
				res[w], errs[w] = lease.Commit(ctx, pgstore.Batch{IndexUUID: "u", IndexName: "i", From: from, To: from + 100,
					Rows: rowsN(fmt.Sprintf("r%d-w%d", round, w), 100, ts)})
			}()
		}
		wg.Wait()
		ok := 0
		for w := range errs {
			switch {
			case errs[w] == nil:
				ok++
				if res[w].Inserted != 100 {
					t.Fatalf("winner inserted %d", res[w].Inserted)
				}
			case !errors.Is(errs[w], pgstore.ErrCheckpointMoved):
				t.Fatalf("writer %d: %v", w, errs[w])
			}
		}
		if ok != 1 {
			t.Fatalf("round %d: %d writers committed, want exactly 1", round, ok)
		}
	}
	cp, _ := checkpointOf(t, s, "u", 0)
	if n := countEvents(t, s); cp.SeqNo != 499 || cp.Rows != 500 || n != 500 {
		t.Fatalf("checkpoint %+v, %d events", cp, n)
	}
}

func TestLeaseIsExclusiveAndDiesWithItsSession(t *testing.T) {
	cfg := testenv.PG(t)
	a := testenv.Archive(t, cfg, pgstore.Options{ApplicationName: "spillway-test-a"})
	ctx := testenv.Context(t, time.Minute)
	b, err := pgstore.Open(ctx, cfg, pgstore.Options{ApplicationName: "spillway-test-b"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	la, err := a.Lead(ctx, "archiver:p")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Lead(ctx, "archiver:p"); !errors.Is(err, pgstore.ErrNotLeader) {
		t.Fatalf("second lead: %v", err)
	}
	// Another prefix has its own lease.
	other, err := b.Lead(ctx, "archiver:q")
	if err != nil {
		t.Fatal(err)
	}
	other.Release()
	info, ok, err := b.Leader(ctx, "archiver:p")
	if err != nil || !ok || info.ApplicationName != "spillway-test-a" || info.PID == 0 {
		t.Fatalf("leader: %+v %v %v", info, ok, err)
	}
	if err := la.Alive(ctx); err != nil {
		t.Fatal(err)
	}
	la.Release()
	if _, ok, _ := b.Leader(ctx, "archiver:p"); ok {
		t.Fatal("lease still held after Release")
	}
	lb, err := b.Lead(ctx, "archiver:p")
	if err != nil {
		t.Fatalf("lead after release: %v", err)
	}
	// The holder's session ends without unlocking (its backend is terminated, as when the
	// process is killed): the lease is free at once, and the old holder notices.
	if _, err := a.Pool().Exec(ctx, "SELECT pg_terminate_backend($1, 10000)", mustLeaderPID(t, a, "archiver:p")); err != nil {
		t.Fatal(err)
	}
	if err := lb.Alive(ctx); err == nil {
		t.Fatal("lease on a terminated session reports alive")
	}
	lb.Release()
	la2, err := a.Lead(ctx, "archiver:p")
	if err != nil {
		t.Fatalf("lead after the holder's session died: %v", err)
	}
	la2.Release()
}

func mustLeaderPID(t *testing.T, s *pgstore.Store, name string) int {
	t.Helper()
	info, ok, err := s.Leader(context.Background(), name)
	if err != nil || !ok {
		t.Fatalf("leader: %v %v", ok, err)
	}
	return info.PID
}

func TestCopyEventsCountsByOriginAndState(t *testing.T) {
	s := migrated(t)
	ctx := testenv.Context(t, time.Minute)
	ts := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	if res, err := s.CopyEvents(ctx, pgstore.OriginBackfill, rowsN("x", 7, ts)); err != nil || res.Inserted != 7 {
		t.Fatalf("backfill: %+v %v", res, err)
	}
	if res, err := s.CopyEvents(ctx, pgstore.OriginRepair, rowsN("x", 9, ts)); err != nil || res.Inserted != 2 {
		t.Fatalf("repair: %+v %v", res, err)
	}
	at := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	if err := s.RecordError(ctx, "copy batch: boom", at); err != nil {
		t.Fatal(err)
	}
	v := pgstore.VerifyRecord{At: at, From: ts, To: at, Missing: 1, Extra: 2, Pending: 3, Repaired: 1}
	if err := s.RecordVerify(ctx, v); err != nil {
		t.Fatal(err)
	}
	st, err := s.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.RowsBackfilled != 7 || st.RowsRepaired != 2 || st.LastError != "copy batch: boom" || !st.LastErrorAt.Equal(at) ||
		st.LastVerify == nil || *st.LastVerify != v {
		t.Fatalf("state %+v %+v", st, st.LastVerify)
	}
}

func TestCountRangesAndIDs(t *testing.T) {
	s := migrated(t)
	ctx := testenv.Context(t, time.Minute)
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var rows []event.Event
	for i := 0; i < 30; i++ { // 10 per minute; the microsecond bounds matter
		rows = append(rows, event.Event{ID: fmt.Sprintf("id-%02d", 29-i), ClientID: "c",
			Timestamp: base.Add(time.Duration(i/10)*time.Minute + time.Duration(i%10)*time.Microsecond), IngestedAt: base})
	}
	if _, err := s.CopyEvents(ctx, pgstore.OriginBackfill, rows); err != nil {
		t.Fatal(err)
	}
	m := func(k int) time.Time { return base.Add(time.Duration(k) * time.Minute) }
	got, err := s.CountRanges(ctx, []event.Range{{From: m(0), To: m(1)}, {From: m(1), To: m(2)}, {From: m(2), To: m(3)}, {From: m(3), To: m(4)},
		{From: m(1), To: m(1).Add(5 * time.Microsecond)}, {From: m(1).Add(5 * time.Microsecond), To: m(2)}})
	if err != nil {
		t.Fatal(err)
	}
	var counts []int64
	for _, c := range got {
		counts = append(counts, c.N)
	}
	if fmt.Sprint(counts) != "[10 10 10 0 5 5]" {
		t.Fatalf("counts %v", counts)
	}
	// The digest sum is computed in SQL; it must equal event.IDHash summed in Go.
	for i, want := range []struct{ from, to int }{{0, 10}, {10, 20}, {20, 30}, {30, 30}, {10, 15}, {15, 20}} {
		var sum int64
		for _, r := range rows[want.from:want.to] {
			sum += event.IDHash(r.ID)
		}
		if got[i].Hash != sum || (want.to > want.from && sum == 0) {
			t.Fatalf("range %d: digest sum %d in PostgreSQL, %d in Go", i, got[i].Hash, sum)
		}
	}
	ids, err := s.IDsInRange(ctx, event.Range{From: m(1), To: m(2)}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 10 || ids[0] != "id-10" || ids[9] != "id-19" {
		t.Fatalf("ids %v", ids)
	}
	if _, err := s.IDsInRange(ctx, event.Range{From: m(0), To: m(3)}, 29); !errors.Is(err, event.ErrTooMany) {
		t.Fatalf("over the limit: %v", err)
	}
}

// Payloads go into jsonb through COPY verbatim and come back value for value.
func TestPayloadRoundTripThroughCopy(t *testing.T) {
	s := migrated(t)
	ctx := testenv.Context(t, time.Minute)
	ts := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var rows []event.Event
	for i, p := range payloadCases {
		rows = append(rows, event.Event{ID: fmt.Sprintf("p%02d", i), ClientID: "c'; DROP TABLE events; --", Timestamp: ts, IngestedAt: ts, Payload: []byte(p)})
	}
	rows = append(rows, event.Event{ID: "nil", ClientID: "c", Timestamp: ts, IngestedAt: ts})
	lease, err := s.Lead(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release()
	if res, err := lease.Commit(ctx, pgstore.Batch{IndexUUID: "u", IndexName: "i", From: -1, To: int64(len(rows)), Rows: rows}); err != nil || res.Inserted != int64(len(rows)) {
		t.Fatalf("commit: %+v %v", res, err)
	}
	for i, p := range payloadCases {
		got, err := s.Get(ctx, fmt.Sprintf("p%02d", i), time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		same, why, err := testenv.SameJSON([]byte(p), got.Payload)
		if err != nil || !same {
			t.Errorf("payload %d: %s %v\n in: %s\nout: %s", i, why, err, p, got.Payload)
		}
		if got.ClientID != rows[i].ClientID {
			t.Errorf("client id %q", got.ClientID)
		}
	}
	if got, err := s.Get(ctx, "nil", time.Time{}); err != nil || got.Payload != nil {
		t.Fatalf("nil payload came back as %q (%v)", got.Payload, err)
	}
}

// payloadCases are what ingest accepts: compact JSON objects without \u0000, unpaired
// surrogates or numbers beyond float64's magnitude; numbers beyond its precision are allowed.
var payloadCases = []string{
	`{"s":"plain","n":null,"t":true,"f":false,"i":0,"neg":-17,"fl":3.25}`,
	`{"unicode":"ü日本語🎉 עברית \u2028 ​ zero-width","emoji":"👩‍👩‍👧‍👦","escaped":"\"\\\/\b\f\n\r\t\u0001"}`,
	`{"nested":{"a":{"b":{"c":[1,[2,[3,{"d":null}]],{}]}}},"empty_obj":{},"empty_arr":[]}`,
	`{"sql":"'; DROP TABLE events; --","copy":"\\.\n\\N\t|,","quote":"O'Brien \"x\""}`,
	`{"big":123456789012345678901234567890123456789,"precise":0.1000000000000000000000000000001,"exp":1.5e300,"tiny":1e-300,"negexp":-2.5E-7}`,
	`{"dup":1,"dup":2}`,
	`{"":"empty key","a.b":"dotted key","k\"q":"quoted key"}`,
}
