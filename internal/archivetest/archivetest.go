// Package archivetest is test support for the archiver's integration tests (pkg/archive and
// cmd/archiver): indexing events through raw _bulk, and checking that PostgreSQL holds exactly
// what Elasticsearch holds, with consistent checkpoint accounting.
package archivetest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/pgstore"
)

// pgConfigs remembers the configuration of each store Stores opened, for the helpers that read
// the archive with their own SQL (PGIDs).
var pgConfigs sync.Map // *pgstore.Store → config.Postgres

// DB is a pool on the database and schema of a store Stores opened, for a test's own SQL.
func DB(t testing.TB, pg *pgstore.Store) *pgxpool.Pool {
	t.Helper()
	cfg, ok := pgConfigs.Load(pg)
	if !ok {
		t.Fatal("archivetest.DB: the store was not opened by archivetest.Stores")
	}
	return testenv.DB(t, cfg.(config.Postgres))
}

// Stores opens both stores for a test: the template installed, the schema migrated.
func Stores(t testing.TB, esCfg config.Elasticsearch, pgCfg config.Postgres, app string) (*esstore.Store, *pgstore.Store) {
	t.Helper()
	ctx := testenv.Context(t, 2*time.Minute)
	es, err := esstore.New(esCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := es.InstallTemplate(ctx); err != nil {
		t.Fatal(err)
	}
	pg := testenv.Archive(t, pgCfg, pgstore.Options{ApplicationName: app})
	pgConfigs.Store(pg, pgCfg)
	return es, pg
}

// Events makes n events with ids prefixed by prefix, @timestamps spread over the days before
// base (so several daily indices), ingestedAt now, and a small payload.
func Events(prefix string, n, days int, base time.Time) []event.Event {
	out := make([]event.Event, n)
	now := time.Now()
	for i := range out {
		out[i] = Event(prefix, i, days, base, now)
	}
	return out
}

// Event is the i-th event of Events.
func Event(prefix string, i, days int, base, now time.Time) event.Event {
	ts := base.Add(-time.Duration(i%max(days, 1)) * 24 * time.Hour).Add(-time.Duration(i) * time.Millisecond)
	return event.Event{ID: fmt.Sprintf("%s-%07d", prefix, i), ClientID: fmt.Sprintf("client-%d", i%7), Type: "t",
		Timestamp: ts, IngestedAt: now, Payload: json.RawMessage(fmt.Sprintf(`{"n":%d,"s":"x"}`, i))}
}

// Index writes events in bulk requests of up to 500, retrying a request while Elasticsearch is
// unavailable (conflicts from a retried request are fine: the id is there).
func Index(ctx context.Context, es *esstore.Store, events []event.Event) error {
	for len(events) > 0 {
		n := min(len(events), 500)
		for {
			_, _, err := testenv.BulkCreate(ctx, es, events[:n])
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return err
			}
			time.Sleep(200 * time.Millisecond)
		}
		events = events[n:]
	}
	return nil
}

// Writer indexes events in the background in small random batches until stopped.
type Writer struct {
	es      *esstore.Store
	prefix  string
	days    int
	n       atomic.Int64
	stop    chan struct{}
	done    chan error
	paused  atomic.Bool
	stopped sync.Once
	err     error
}

// StartWriter starts indexing events with ids prefixed by prefix.
func StartWriter(es *esstore.Store, prefix string, days int) *Writer {
	w := &Writer{es: es, prefix: prefix, days: days, stop: make(chan struct{}), done: make(chan error, 1)}
	go func() { w.done <- w.loop() }()
	return w
}

func (w *Writer) loop() error {
	ctx := context.Background()
	base := time.Now()
	for {
		select {
		case <-w.stop:
			return nil
		default:
		}
		if w.paused.Load() {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		k := 1 + rand.IntN(60)
		start := int(w.n.Load())
		evs := make([]event.Event, k)
		for i := range evs {
			evs[i] = Event(w.prefix, start+i, w.days, base, time.Now())
		}
		for {
			_, _, err := testenv.BulkCreate(ctx, w.es, evs)
			if err == nil {
				break
			}
			select {
			case <-w.stop:
				return fmt.Errorf("stopped with a batch not acknowledged: %w", err)
			case <-time.After(100 * time.Millisecond):
			}
		}
		w.n.Add(int64(k))
		time.Sleep(time.Duration(rand.IntN(10)) * time.Millisecond)
	}
}

// Pause holds the writer (between batches) until Resume.
func (w *Writer) Pause() { w.paused.Store(true) }

// Resume lets a paused writer go on.
func (w *Writer) Resume() { w.paused.Store(false) }

// Count is the number of events acknowledged so far.
func (w *Writer) Count() int64 { return w.n.Load() }

// Stop stops the writer and returns how many events it indexed.
func (w *Writer) Stop(t testing.TB) int64 {
	t.Helper()
	w.stopped.Do(func() {
		close(w.stop)
		w.err = <-w.done
	})
	if w.err != nil {
		t.Fatal(w.err)
	}
	return w.n.Load()
}

var everything = event.Range{From: time.Unix(0, 0), To: time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)}

// Key is an event's identity as the archive keys it: the UTC day of its timestamp and its id,
// "2026-03-04/order-1". One id may be an event on each of several days.
func Key(id string, ts time.Time) string { return ts.UTC().Format(time.DateOnly) + "/" + id }

// ESIDs lists the identity (Key) of every event in the event indices (after a refresh), sorted.
func ESIDs(t testing.TB, es *esstore.Store) []string {
	t.Helper()
	ctx := testenv.Context(t, 5*time.Minute)
	if err := es.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	var ids []string
	if err := es.ScanRange(ctx, everything, 10000, func(evs []event.Event) error {
		for _, e := range evs {
			ids = append(ids, Key(e.ID, e.Timestamp))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(ids)
	return ids
}

// PGIDs lists the identity (Key) of every archived event, sorted; an (id, day) stored twice is
// listed twice.
func PGIDs(t testing.TB, pg *pgstore.Store) []string {
	t.Helper()
	ctx := testenv.Context(t, 5*time.Minute)
	rows, err := DB(t, pg).Query(ctx, "SELECT id, ts FROM events_all")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		var ts time.Time
		if err := rows.Scan(&id, &ts); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, Key(id, ts))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	sort.Strings(ids)
	return ids
}

// checkpointOf looks up each shard's checkpoint among cps. A shard that never held a document
// has nothing to archive and may have no checkpoint row: it stands at -1 with no rows.
func checkpointOf(cps []pgstore.Checkpoint) func(event.Shard) pgstore.Checkpoint {
	byKey := map[string]pgstore.Checkpoint{}
	for _, c := range cps {
		byKey[fmt.Sprintf("%s/%d", c.IndexUUID, c.Shard)] = c
	}
	return func(sh event.Shard) pgstore.Checkpoint {
		if c, ok := byKey[fmt.Sprintf("%s/%d", sh.IndexUUID, sh.Shard)]; ok {
			return c
		}
		return pgstore.Checkpoint{SeqNo: -1}
	}
}

// CaughtUp reports whether every shard's checkpoint has reached its global checkpoint.
func CaughtUp(ctx context.Context, es *esstore.Store, pg *pgstore.Store) (bool, error) {
	shards, err := es.Shards(ctx)
	if err != nil {
		return false, err
	}
	cps, err := pg.Checkpoints(ctx)
	if err != nil {
		return false, err
	}
	at := checkpointOf(cps)
	for _, sh := range shards {
		if at(sh).SeqNo < sh.MaxSeqNo || sh.GlobalCheckpoint < sh.MaxSeqNo {
			return false, nil
		}
	}
	return true, nil
}

// WaitCaughtUp waits until the archiver has passed everything indexed (the deadline only
// guards against a hang).
func WaitCaughtUp(t testing.TB, es *esstore.Store, pg *pgstore.Store, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ok, err := CaughtUp(ctx, es, pg)
		cancel()
		if ok {
			return
		}
		lastErr = err
		if time.Now().After(deadline) {
			t.Fatalf("archiver did not catch up within %s (last error %v)", timeout, lastErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// CheckSameIDs asserts that PostgreSQL holds exactly the events Elasticsearch holds, each
// (id, UTC day) once; it returns both lists of keys (Key).
func CheckSameIDs(t testing.TB, es *esstore.Store, pg *pgstore.Store) (esIDs, pgIDs []string) {
	t.Helper()
	esIDs, pgIDs = ESIDs(t, es), PGIDs(t, pg)
	if len(esIDs) == 0 {
		t.Fatal("no events in Elasticsearch: the test checked nothing")
	}
	diff(t, esIDs, pgIDs)
	return esIDs, pgIDs
}

// CheckExactlyOnce asserts that PostgreSQL holds exactly the events Elasticsearch holds, each
// (id, day) once (each day partition's unique id guarantees "once"; the accounting below checks
// that no range was skipped or counted twice): every shard's checkpoint equals its global checkpoint; the rows of all
// checkpoints plus the rows written outside the feed (repaired, backfilled) add up to the
// events table; and when nothing was written outside the feed, each checkpoint's rows equal its
// shard's document count.
func CheckExactlyOnce(t testing.TB, es *esstore.Store, pg *pgstore.Store) int {
	t.Helper()
	ctx := testenv.Context(t, 5*time.Minute)
	esIDs, pgIDs := CheckSameIDs(t, es, pg)
	shards, err := es.Shards(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cps, err := pg.Checkpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st, err := pg.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	outside := st.RowsRepaired + st.RowsBackfilled
	at := checkpointOf(cps)
	var rows int64
	for _, c := range cps {
		rows += c.Rows
	}
	for _, sh := range shards {
		c := at(sh)
		if c.SeqNo != sh.GlobalCheckpoint || c.SeqNo != sh.MaxSeqNo {
			t.Errorf("%s[%d]: checkpoint %+v, global checkpoint %d, max seq %d", sh.Index, sh.Shard, c, sh.GlobalCheckpoint, sh.MaxSeqNo)
		}
		if outside > 0 {
			continue
		}
		counts, err := es.CountShard(ctx, sh.Index, sh.Shard, sh.GlobalCheckpoint, []event.Range{everything})
		if err != nil {
			t.Fatal(err)
		}
		if c.Rows != counts[0].Total {
			t.Errorf("%s[%d]: checkpoint counts %d rows, the shard has %d documents", sh.Index, sh.Shard, c.Rows, counts[0].Total)
		}
	}
	if rows+outside != int64(len(pgIDs)) {
		t.Errorf("accounting: checkpoints %d + repaired %d + backfilled %d rows, events table %d", rows, st.RowsRepaired, st.RowsBackfilled, len(pgIDs))
	}
	return len(esIDs)
}

func diff(t testing.TB, esIDs, pgIDs []string) {
	t.Helper()
	var missing, extra, dup []string
	i, j := 0, 0
	for i < len(esIDs) || j < len(pgIDs) {
		switch {
		case j > 0 && j < len(pgIDs) && pgIDs[j] == pgIDs[j-1]:
			dup = append(dup, pgIDs[j])
			j++
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
	if len(missing)+len(extra)+len(dup) > 0 {
		t.Fatalf("Elasticsearch %d ids, PostgreSQL %d: missing %d %v, extra %d %v, duplicated %d %v", len(esIDs), len(pgIDs),
			len(missing), head(missing), len(extra), head(extra), len(dup), head(dup))
	}
}

func head(s []string) []string { return s[:min(len(s), 10)] }

// Payloads are what ingest accepts and the archive must return value for value: compact JSON
// objects with unicode, nulls, nesting, SQL and COPY metacharacters, and numbers beyond
// float64's precision (but not its magnitude).
var Payloads = []string{
	`{"s":"plain","n":null,"t":true,"f":false,"i":0,"neg":-17,"fl":3.25}`,
	`{"unicode":"ü日本語🎉 עברית \u2028 ​ zero-width","emoji":"👩‍👩‍👧‍👦","escaped":"\"\\\/\b\f\n\r\t\u0001"}`,
	`{"nested":{"a":{"b":{"c":[1,[2,[3,{"d":null}]],{}]}}},"empty_obj":{},"empty_arr":[]}`,
	`{"sql":"'; DROP TABLE events; --","copy":"\\.\n\\N\t|,","quote":"O'Brien \"x\""}`,
	`{"big":123456789012345678901234567890123456789,"precise":0.1000000000000000000000000000001,"exp":1.5e300,"tiny":1e-300,"negexp":-2.5E-7}`,
	`{"a.b":"dotted key","k\"q":"quoted key","arr":[null,null]}`,
}
