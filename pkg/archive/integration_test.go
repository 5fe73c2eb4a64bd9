package archive_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillway/spillway/internal/archivetest"
	"github.com/spillway/spillway/internal/metrictest"
	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/archive"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/pgstore"
)

func archiverConfig() config.Archiver {
	return config.Archiver{BatchSize: 50, PollInterval: 20 * time.Millisecond, BackoffMax: 500 * time.Millisecond,
		VerifyBucket: time.Hour}
}

// running is an archiver started in the background.
type running struct {
	*archive.Archiver
	reg  *prometheus.Registry
	done chan struct{}
	once sync.Once
}

func startArchiver(t *testing.T, es *esstore.Store, pg *pgstore.Store, cfg config.Archiver) *running {
	t.Helper()
	reg := prometheus.NewRegistry()
	r := &running{reg: reg, done: make(chan struct{})}
	r.Archiver = archive.New(es, archive.Postgres(pg), archive.Options{Config: cfg, Metrics: archive.NewMetrics(reg, pg)})
	go func() { defer close(r.done); _ = r.Run(context.Background()) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	r.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := r.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
		<-r.done
	})
}

func (r *running) metric(t *testing.T, name string) float64 {
	return metrictest.Sum(t, r.reg, name)
}

// waitUntil polls cond; the deadline only guards against a hang.
func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestIntegrationArchivesEventsValueForValue(t *testing.T) {
	esCfg := testenv.ES(t)
	esCfg.Shards = 2
	es, pg := archivetest.Stores(t, esCfg, testenv.PG(t), "spillway-test")
	ctx := testenv.Context(t, 2*time.Minute)
	now := time.Now()
	var evs []event.Event
	for i, p := range archivetest.Payloads {
		evs = append(evs, event.Event{ID: fmt.Sprintf("p-%d-ü", i), ClientID: "client'; DROP TABLE events; --", Type: "type\t\"x\"",
			Timestamp: now.Add(-time.Duration(i) * time.Hour), IngestedAt: now.Add(time.Duration(i) * time.Microsecond), Payload: json.RawMessage(p)})
	}
	evs = append(evs, event.Event{ID: "no-payload", ClientID: "c", Timestamp: now, IngestedAt: now})
	if created, _, err := testenv.BulkCreate(ctx, es, evs); err != nil || created != len(evs) {
		t.Fatalf("index: %d %v", created, err)
	}
	startArchiver(t, es, pg, archiverConfig())
	archivetest.WaitCaughtUp(t, es, pg, time.Minute)
	archivetest.CheckExactlyOnce(t, es, pg)
	for _, e := range evs {
		got, err := pg.Get(ctx, e.ID, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if got.ClientID != e.ClientID || got.Type != e.Type || !got.Timestamp.Equal(event.Truncate(e.Timestamp)) ||
			!got.IngestedAt.Equal(event.Truncate(e.IngestedAt)) {
			t.Errorf("%s: got %+v, want %+v", e.ID, got, e)
		}
		if e.Payload == nil {
			if got.Payload != nil {
				t.Errorf("%s: payload %s, want none", e.ID, got.Payload)
			}
			continue
		}
		same, why, err := testenv.SameJSON(e.Payload, got.Payload)
		if err != nil || !same {
			t.Errorf("%s: payload differs: %s %v\n in: %s\nout: %s", e.ID, why, err, e.Payload, got.Payload)
		}
	}
}

// An event that becomes visible after the archiver has passed its time — old @timestamp, old
// ingestedAt, as from a bulk request retried long after — still arrives: the feed follows
// sequence numbers, not times.
func TestIntegrationLateEventArrives(t *testing.T) {
	es, pg := archivetest.Stores(t, testenv.ES(t), testenv.PG(t), "spillway-test")
	ctx := testenv.Context(t, 2*time.Minute)
	base := time.Now().UTC().Truncate(24 * time.Hour).Add(12 * time.Hour)
	if err := archivetest.Index(ctx, es, archivetest.Events("now", 200, 1, base)); err != nil {
		t.Fatal(err)
	}
	startArchiver(t, es, pg, archiverConfig())
	archivetest.WaitCaughtUp(t, es, pg, time.Minute)

	late := []event.Event{
		// Into the index the archiver has already read up to its end.
		{ID: "late-same-day", ClientID: "c", Timestamp: base.Add(-11 * time.Hour), IngestedAt: time.Now().Add(-3 * time.Hour)},
		// Into an index for a day long past, created after the archiver started.
		{ID: "late-old-day", ClientID: "c", Timestamp: base.AddDate(0, 0, -10), IngestedAt: time.Now().AddDate(0, 0, -10)},
	}
	if _, _, err := testenv.BulkCreate(ctx, es, late); err != nil {
		t.Fatal(err)
	}
	archivetest.WaitCaughtUp(t, es, pg, time.Minute)
	if n := archivetest.CheckExactlyOnce(t, es, pg); n != 202 {
		t.Fatalf("%d events", n)
	}
	for _, e := range late {
		if _, err := pg.Get(ctx, e.ID, time.Time{}); err != nil {
			t.Fatalf("%s: %v", e.ID, err)
		}
	}
}

// Two archivers on one prefix and schema: one leads, the other stands by and takes over when
// the leader stops; nothing is written twice, and the work is done once (give or take the page
// read ahead at the handover).
func TestIntegrationTwoArchivers(t *testing.T) {
	esCfg, pgCfg := testenv.ES(t), testenv.PG(t)
	es, pgA := archivetest.Stores(t, esCfg, pgCfg, "spillway-test-a")
	_, pgB := archivetest.Stores(t, esCfg, pgCfg, "spillway-test-b")
	w := archivetest.StartWriter(es, "two", 2)
	cfg := archiverConfig()
	a := startArchiver(t, es, pgA, cfg)
	b := startArchiver(t, es, pgB, cfg)
	feed := func(r *running) float64 { return r.metric(t, "spillway_archiver_rows_archived_total") }
	waitUntil(t, "some rows archived", time.Minute, func() bool { return feed(a)+feed(b) >= 300 })
	leader, standby := a, b
	if b.metric(t, "spillway_archiver_leader") == 1 {
		leader, standby = b, a
	}
	if leader.metric(t, "spillway_archiver_leader") != 1 || standby.metric(t, "spillway_archiver_leader") != 0 || feed(standby) != 0 {
		t.Fatalf("not one leader: a=%v b=%v, standby archived %v", a.metric(t, "spillway_archiver_leader"), b.metric(t, "spillway_archiver_leader"), feed(standby))
	}
	leader.stop(t)
	waitUntil(t, "the standby to take over", time.Minute, func() bool { return feed(standby) >= 100 })
	total := w.Stop(t)
	archivetest.WaitCaughtUp(t, es, pgB, time.Minute)
	if n := archivetest.CheckExactlyOnce(t, es, pgB); int64(n) != total {
		t.Fatalf("Elasticsearch has %d events, the writer indexed %d", n, total)
	}
	rows := feed(a) + feed(b)
	read := a.metric(t, "spillway_archiver_documents_read_total") + b.metric(t, "spillway_archiver_documents_read_total")
	if rows != float64(total) {
		t.Fatalf("archivers inserted %v rows for %d events", rows, total)
	}
	if read > float64(total)+2*float64(cfg.BatchSize) {
		t.Fatalf("archivers read %v documents for %d events: work was repeated", read, total)
	}
	t.Logf("%d events; rows inserted by the leader %v, by the standby after takeover %v; documents read %v", total, feed(leader), feed(standby), read)
}

// PostgreSQL crashes (immediate shutdown) and comes back while events keep arriving.
func TestIntegrationPostgresRestart(t *testing.T) {
	cluster := testenv.StartPG(t)
	es, pg := archivetest.Stores(t, testenv.ES(t), testenv.PGAt(t, cluster.URL()), "spillway-test")
	w := archivetest.StartWriter(es, "pgr", 2)
	r := startArchiver(t, es, pg, archiverConfig())
	feed := func() float64 { return r.metric(t, "spillway_archiver_rows_archived_total") }
	waitUntil(t, "rows archived", time.Minute, func() bool { return feed() >= 200 })
	cluster.Restart(t, true, 500*time.Millisecond)
	before := feed()
	waitUntil(t, "archiving after the restart", 2*time.Minute, func() bool { return feed() >= before+200 })
	total := w.Stop(t)
	archivetest.WaitCaughtUp(t, es, pg, time.Minute)
	if n := archivetest.CheckExactlyOnce(t, es, pg); int64(n) != total {
		t.Fatalf("Elasticsearch has %d events, the writer indexed %d", n, total)
	}
	if r.metric(t, "spillway_archiver_errors_total") == 0 {
		t.Fatal("the archiver never noticed the restart: the test did not exercise it")
	}
}

// Elasticsearch is killed and restarted (a private node) while the archiver runs.
func TestIntegrationElasticsearchRestart(t *testing.T) {
	node := testenv.StartES(t, 1, "512m").Nodes[0]
	esCfg := testenv.ESAt(t, node.URL())
	esCfg.MaxRetries = 0
	esCfg.RequestTimeout = 5 * time.Second
	es, pg := archivetest.Stores(t, esCfg, testenv.PG(t), "spillway-test")
	w := archivetest.StartWriter(es, "esr", 2)
	r := startArchiver(t, es, pg, archiverConfig())
	feed := func() float64 { return r.metric(t, "spillway_archiver_rows_archived_total") }
	waitUntil(t, "rows archived", time.Minute, func() bool { return feed() >= 200 })
	w.Pause()
	node.Kill(t)
	waitUntil(t, "the archiver to notice", time.Minute, func() bool { return r.metric(t, "spillway_archiver_errors_total") > 0 })
	node.Start(t)
	w.Resume()
	before := feed()
	waitUntil(t, "archiving after the restart", 3*time.Minute, func() bool { return feed() >= before+200 })
	total := w.Stop(t)
	archivetest.WaitCaughtUp(t, es, pg, 2*time.Minute)
	if n := archivetest.CheckExactlyOnce(t, es, pg); int64(n) != total {
		t.Fatalf("Elasticsearch has %d events, the writer indexed %d", n, total)
	}
}

// The pool is a hard bound: sampled from pg_stat_activity while the archiver drains a backlog
// and status and verify run beside it, the process never holds more than postgres.max_conns.
func TestIntegrationPoolCapHolds(t *testing.T) {
	pgCfg := testenv.PG(t)
	pgCfg.MaxConns = 2
	app := testenv.Name("spillway-cap-")
	es, pg := archivetest.Stores(t, testenv.ES(t), pgCfg, app)
	ctx := testenv.Context(t, 3*time.Minute)
	n := 10000
	if !testenv.Short() {
		n = 100000
	}
	if err := archivetest.Index(ctx, es, archivetest.Events("cap", n, 2, time.Now())); err != nil {
		t.Fatal(err)
	}
	sampler, err := pgstore.Open(ctx, testenv.PG(t), pgstore.Options{ApplicationName: "spillway-sampler"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sampler.Close()

	var maxSeen, maxInUse atomic.Int64
	var samples atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if c, err := sampler.Connections(ctx, app); err == nil {
				samples.Add(1)
				for old := maxSeen.Load(); int64(c) > old && !maxSeen.CompareAndSwap(old, int64(c)); old = maxSeen.Load() {
				}
			}
			_, inUse := pg.Stat()
			for old := maxInUse.Load(); int64(inUse) > old && !maxInUse.CompareAndSwap(old, int64(inUse)); old = maxInUse.Load() {
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	cfg := archiverConfig()
	cfg.BatchSize = 500
	r := startArchiver(t, es, pg, cfg)
	// Beside the archiver, on the same pool: status and verification, repeatedly.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, _ = r.Status(ctx)
			_, _ = r.Verify(ctx, archive.VerifyRequest{From: time.Now().Add(-72 * time.Hour), To: time.Now().Add(time.Hour)})
		}
	}()
	archivetest.WaitCaughtUp(t, es, pg, 3*time.Minute)
	close(stop)
	wg.Wait()
	archivetest.CheckExactlyOnce(t, es, pg)
	t.Logf("pg_stat_activity: at most %d connections in %d samples; pool in use at most %d; cap %d", maxSeen.Load(), samples.Load(), maxInUse.Load(), pgCfg.MaxConns)
	if samples.Load() == 0 || maxSeen.Load() < 1 {
		t.Fatal("the sampler saw no connection: it measured nothing")
	}
	if maxSeen.Load() > int64(pgCfg.MaxConns) || maxInUse.Load() > int64(pgCfg.MaxConns) {
		t.Fatalf("the archiver held %d connections (pool says %d in use), cap %d", maxSeen.Load(), maxInUse.Load(), pgCfg.MaxConns)
	}
	if v := r.metric(t, "spillway_archiver_pool_max_connections"); v != 2 {
		t.Fatalf("pool max metric %v", v)
	}
}

func TestIntegrationVerifyFindsAndRepairs(t *testing.T) {
	es, pg := archivetest.Stores(t, testenv.ES(t), testenv.PG(t), "spillway-test")
	ctx := testenv.Context(t, 2*time.Minute)
	base := time.Now().UTC().Truncate(time.Hour)
	evs := archivetest.Events("v", 300, 2, base)
	if err := archivetest.Index(ctx, es, evs); err != nil {
		t.Fatal(err)
	}
	r := startArchiver(t, es, pg, archiverConfig())
	archivetest.WaitCaughtUp(t, es, pg, time.Minute)
	r.stop(t)
	req := archive.VerifyRequest{From: base.Add(-72 * time.Hour), To: base.Add(time.Hour), Bucket: time.Hour}
	// Both stores agree in count and in the sum of id digests (Elasticsearch sums the idHash ingest
	// stored, PostgreSQL computes it in SQL), so no bucket needs its ids compared.
	if rep, err := r.Verify(ctx, req); err != nil || !rep.Complete() || rep.Compared != 0 {
		t.Fatalf("caught up: %+v %v", rep, err)
	}

	// A gap (rows lost from PostgreSQL) and an extra row (in no index).
	gone := []string{evs[3].ID, evs[4].ID, evs[150].ID, evs[299].ID}
	if _, err := archivetest.DB(t, pg).Exec(ctx, "DELETE FROM events WHERE id = ANY($1)", gone); err != nil {
		t.Fatal(err)
	}
	extra := event.Event{ID: "extra-row", ClientID: "c", Timestamp: base.Add(-time.Hour), IngestedAt: base}
	if _, err := pg.InsertEvent(ctx, extra); err != nil {
		t.Fatal(err)
	}
	rep, err := r.VerifyAndRecord(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || rep.Missing != 4 || rep.Extra != 1 || rep.Pending != 0 || rep.ExtraIDs[0] != "extra-row" || len(rep.Buckets) != 73 {
		t.Fatalf("verify: %+v", rep)
	}
	req.Repair = true
	if rep, err = r.VerifyAndRecord(ctx, req); err != nil || rep.Repaired != 4 || rep.Extra != 1 {
		t.Fatalf("repair: %+v %v", rep, err)
	}
	req.Repair = false
	if rep, err = r.Verify(ctx, req); err != nil || rep.Missing != 0 || rep.Extra != 1 || rep.OK() {
		t.Fatalf("after repair: %+v %v", rep, err)
	}
	for _, id := range gone {
		got, err := pg.Get(ctx, id, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if same, why, _ := testenv.SameJSON(got.Payload, evs[mustIndex(t, evs, id)].Payload); !same {
			t.Fatalf("repaired %s: %s", id, why)
		}
	}
	if _, err := archivetest.DB(t, pg).Exec(ctx, "DELETE FROM events WHERE id = 'extra-row'"); err != nil {
		t.Fatal(err)
	}
	if rep, err = r.Verify(ctx, req); err != nil || !rep.OK() || !rep.Complete() {
		t.Fatalf("clean: %+v %v", rep, err)
	}
	st, err := pg.State(ctx)
	if err != nil || st.RowsRepaired != 4 || st.LastVerify == nil || st.LastVerify.Repaired != 4 {
		t.Fatalf("state %+v %v", st, err)
	}

	// One row lost and one extra in the same bucket: equal counts, different digest sums.
	if _, err := archivetest.DB(t, pg).Exec(ctx, "DELETE FROM events WHERE id = $1", evs[10].ID); err != nil {
		t.Fatal(err)
	}
	swapped := event.Event{ID: "swapped-in", ClientID: "c", Timestamp: evs[10].Timestamp.Add(time.Microsecond), IngestedAt: base}
	if !swapped.Timestamp.Truncate(time.Hour).Equal(evs[10].Timestamp.Truncate(time.Hour)) {
		t.Fatal("the swap must stay in one bucket")
	}
	if _, err := pg.InsertEvent(ctx, swapped); err != nil {
		t.Fatal(err)
	}
	if rep, err = r.Verify(ctx, req); err != nil || rep.Missing != 1 || rep.Extra != 1 ||
		rep.MissingIDs[0] != evs[10].ID || rep.ExtraIDs[0] != "swapped-in" {
		t.Fatalf("missing and extra in one bucket: %+v %v", rep, err)
	}
	req.Repair = true
	if rep, err = r.Verify(ctx, req); err != nil || rep.Repaired != 1 {
		t.Fatalf("repair the swap: %+v %v", rep, err)
	}
	if _, err := archivetest.DB(t, pg).Exec(ctx, "DELETE FROM events WHERE id = 'swapped-in'"); err != nil {
		t.Fatal(err)
	}
	// Rows were deleted behind the archive's back, so its accounting cannot add up; the sets can.
	archivetest.CheckSameIDs(t, es, pg)
}

func mustIndex(t *testing.T, evs []event.Event, id string) int {
	for i, e := range evs {
		if e.ID == id {
			return i
		}
	}
	t.Fatalf("no event %s", id)
	return -1
}

func TestIntegrationBackfillThenFeed(t *testing.T) {
	es, pg := archivetest.Stores(t, testenv.ES(t), testenv.PG(t), "spillway-test")
	ctx := testenv.Context(t, 2*time.Minute)
	base := time.Now().UTC().Truncate(time.Hour)
	evs := archivetest.Events("b", 600, 3, base)
	if err := archivetest.Index(ctx, es, evs); err != nil {
		t.Fatal(err)
	}
	if err := es.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	a := archive.New(es, archive.Postgres(pg), archive.Options{Config: archiverConfig(), Writers: 3})
	from, to := base.Add(-24*time.Hour-time.Minute), base.Add(time.Minute) // days 0 and 1: 400 events
	rep, err := a.Backfill(ctx, from, to, nil)
	if err != nil || rep.Total != 400 || rep.Read != 400 || rep.Inserted != 400 {
		t.Fatalf("backfill: %+v %v", rep, err)
	}
	if rep, err = a.Backfill(ctx, from, to, nil); err != nil || rep.Read != 400 || rep.Inserted != 0 {
		t.Fatalf("backfill again: %+v %v", rep, err)
	}
	// The feed then archives the rest, skipping what backfill wrote; the accounting adds up.
	r := startArchiver(t, es, pg, archiverConfig())
	archivetest.WaitCaughtUp(t, es, pg, time.Minute)
	if n := archivetest.CheckExactlyOnce(t, es, pg); n != 600 {
		t.Fatalf("%d events", n)
	}
	if v := r.metric(t, "spillway_archiver_rows_archived_total"); v != 200 {
		t.Fatalf("feed inserted %v rows, want the 200 backfill did not cover", v)
	}
}
