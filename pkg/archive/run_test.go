package archive

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillway/spillway/internal/metrictest"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/pgstore"
)

func testConfig() config.Archiver {
	return config.Archiver{BatchSize: 5, PollInterval: 2 * time.Millisecond, BackoffMax: 10 * time.Millisecond,
		VerifyBucket: time.Hour}
}

// start runs an archiver in the background and stops it when the test ends.
func start(t *testing.T, es *fakeES, pg *fakePG, cfg config.Archiver, reg prometheus.Registerer) *Archiver {
	t.Helper()
	a := New(es, pg, Options{Config: cfg, Metrics: NewMetrics(reg, nil)})
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
		<-done
	})
	return a
}

var day = time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)

func (p *fakePG) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.events)
}

// allArchived checks the end state: the same ids on both sides, and every checkpoint at its
// shard's global checkpoint with rows equal to the shard's documents.
func allArchived(es *fakeES, pg *fakePG) error {
	es.mu.Lock()
	defer es.mu.Unlock()
	pg.mu.Lock()
	defer pg.mu.Unlock()
	total := 0
	for _, s := range es.shards {
		total += len(s.docs)
		for _, d := range s.docs {
			if _, ok := pg.events[keyOf(d.Event)]; !ok {
				return fmt.Errorf("%s missing", d.Event.ID)
			}
		}
		cp, ok := pg.cps[shardKey{s.uuid, s.shard}]
		if len(s.docs) == 0 {
			continue
		}
		if !ok || cp.SeqNo != s.gcp || cp.Rows != int64(len(s.docs)) {
			return fmt.Errorf("%s[%d]: checkpoint %+v, global checkpoint %d, %d docs", s.index, s.shard, cp, s.gcp, len(s.docs))
		}
	}
	if len(pg.events) != total {
		return fmt.Errorf("%d rows for %d documents", len(pg.events), total)
	}
	return nil
}

func TestRunArchivesEveryShardInPages(t *testing.T) {
	es, pg := newFakeES(), newFakePG()
	n := 0
	for _, idx := range []string{"ev-2026.04.01", "ev-2026.04.02"} {
		for shard := 0; shard < 2; shard++ {
			for i := 0; i < 11+shard; i++ { // 11 and 12 docs: a full last page and a short one
				es.add(idx, shard, doc(fmt.Sprintf("%s-%d-%02d", idx, shard, i), day), true)
				n++
			}
		}
	}
	reg := prometheus.NewRegistry()
	start(t, es, pg, testConfig(), reg)
	waitFor(t, "all archived", func() bool { return allArchived(es, pg) == nil })
	if got := metrictest.Sum(t, reg, "spillway_archiver_rows_archived_total"); got != float64(n) {
		t.Fatalf("rows metric %v, want %d", got, n)
	}

	// New documents, in an existing and in a new index, arrive too.
	es.add("ev-2026.04.01", 0, doc("late-1", day), true)
	es.add("ev-2026.03.01", 0, doc("late-2", day.AddDate(0, -1, 0)), true)
	waitFor(t, "late documents", func() bool { return allArchived(es, pg) == nil })
}

// Operations above the global checkpoint may not be on every copy yet; the archiver leaves
// them until the checkpoint passes them.
func TestRunStopsAtTheGlobalCheckpoint(t *testing.T) {
	es, pg := newFakeES(), newFakePG()
	for i := 0; i < 7; i++ {
		es.add("ev-2026.04.01", 0, doc(fmt.Sprintf("a%d", i), day), i < 4) // gcp = 3
	}
	start(t, es, pg, testConfig(), nil)
	waitFor(t, "checkpoint at 3", func() bool {
		cps, _ := pg.Checkpoints(context.Background())
		return len(cps) == 1 && cps[0].SeqNo == 3
	})
	// Rounds are sequential: once three more have begun, two whole rounds have passed since.
	rounds := es.calls()
	waitFor(t, "more rounds", func() bool { return es.calls() >= rounds+3 })
	if n := pg.count(); n != 4 {
		t.Fatalf("archived %d events beyond the global checkpoint", n-4)
	}
	es.advance()
	waitFor(t, "all archived", func() bool { return allArchived(es, pg) == nil })
}

// Documents are visible only after a refresh; an archiver that trusted the global checkpoint
// without refreshing would see a short page and move its checkpoint past unseen documents.
func TestRunRefreshesBeforeReading(t *testing.T) {
	es, pg := newFakeES(), newFakePG()
	for i := 0; i < 12; i++ {
		es.add("ev-2026.04.01", 0, doc(fmt.Sprintf("a%02d", i), day), true)
	}
	// Documents 0-2 were refreshed long ago; 3-11 are durable (≤ gcp) but not yet visible.
	es.shards[0].visible = 2
	start(t, es, pg, testConfig(), nil)
	waitFor(t, "all archived", func() bool { return allArchived(es, pg) == nil })
	es.mu.Lock()
	defer es.mu.Unlock()
	if es.refreshes == 0 {
		t.Fatal("no refresh")
	}
}

func TestRunSurvivesAMovedCheckpoint(t *testing.T) {
	es, pg := newFakeES(), newFakePG()
	for i := 0; i < 20; i++ {
		es.add("ev-2026.04.01", 0, doc(fmt.Sprintf("a%02d", i), day), true)
	}
	var once sync.Once
	// Another writer commits seq 0-9 just before our first batch: ours must not be applied, and
	// the archiver must go on from 9 without writing anything twice.
	pg.beforeCommit = func(b pgstore.Batch) {
		once.Do(func() {
			pg.mu.Lock()
			defer pg.mu.Unlock()
			var rows []event.Event
			for i := 0; i < 10; i++ {
				rows = append(rows, es.shards[0].docs[i].Event)
			}
			pg.cps[shardKey{b.IndexUUID, b.Shard}] = &pgstore.Checkpoint{IndexUUID: b.IndexUUID, Shard: b.Shard, IndexName: b.IndexName, SeqNo: 9, Rows: pg.insert(rows)}
		})
	}
	reg := prometheus.NewRegistry()
	start(t, es, pg, testConfig(), reg)
	waitFor(t, "all archived", func() bool { return allArchived(es, pg) == nil })
	if c := metrictest.Sum(t, reg, "spillway_archiver_rows_archived_total"); c != 10 {
		t.Fatalf("archiver inserted %v rows, want the 10 the other writer did not", c)
	}
}

func TestRunBacksOffAndResumes(t *testing.T) {
	es, pg := newFakeES(), newFakePG()
	for i := 0; i < 9; i++ {
		es.add("ev-2026.04.01", 0, doc(fmt.Sprintf("a%d", i), day), true)
	}
	es.failShards = 4  // Elasticsearch unavailable for a while
	pg.failCommits = 2 // then PostgreSQL drops the connection twice (and the lease with it)
	reg := prometheus.NewRegistry()
	start(t, es, pg, testConfig(), reg)
	waitFor(t, "all archived", func() bool { return allArchived(es, pg) == nil })
	pg.mu.Lock()
	leads, errs := pg.leads, len(pg.errors)
	pg.mu.Unlock()
	if leads < 3 {
		t.Fatalf("lease taken %d times; a lost session must be replaced", leads)
	}
	if errs < 6 {
		t.Fatalf("%d errors recorded for status, want at least 6", errs)
	}
	if e := metrictest.Sum(t, reg, "spillway_archiver_errors_total"); e < 6 {
		t.Fatalf("errors metric %v", e)
	}
}

func TestStandbyDoesNothingUntilTheLeaseIsFree(t *testing.T) {
	es, pg := newFakeES(), newFakePG()
	for i := 0; i < 9; i++ {
		es.add("ev-2026.04.01", 0, doc(fmt.Sprintf("a%d", i), day), true)
	}
	other, err := pg.Lead(context.Background(), "x")
	if err != nil {
		t.Fatal(err)
	}
	start(t, es, pg, testConfig(), nil)
	waitFor(t, "the standby to ask for the lease three times", func() bool {
		pg.mu.Lock()
		defer pg.mu.Unlock()
		return pg.refusals >= 3
	})
	es.mu.Lock()
	reads := es.reads
	es.mu.Unlock()
	if reads != 0 || pg.count() != 0 {
		t.Fatalf("standby read %d pages and wrote %d rows", reads, pg.count())
	}
	other.Release()
	waitFor(t, "takeover", func() bool { return allArchived(es, pg) == nil })
}

// Stop lets the batch in progress commit, then Run returns without starting another.
func TestStopFinishesTheCurrentBatch(t *testing.T) {
	es, pg := newFakeES(), newFakePG()
	for i := 0; i < 50; i++ {
		es.add("ev-2026.04.01", 0, doc(fmt.Sprintf("a%02d", i), day), true)
	}
	inCommit := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	pg.beforeCommit = func(pgstore.Batch) {
		once.Do(func() { close(inCommit); <-release })
	}
	a := New(es, pg, Options{Config: testConfig()})
	done := make(chan error, 1)
	go func() { done <- a.Run(context.Background()) }()
	<-inCommit
	stopped := make(chan error, 1)
	go func() { stopped <- a.Stop(context.Background()) }()
	waitFor(t, "stop requested", a.stopping)
	close(release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	cps, _ := pg.Checkpoints(context.Background())
	if len(cps) != 1 || cps[0].SeqNo != 4 || pg.count() != 5 {
		t.Fatalf("after stop: %+v, %d rows; want exactly the first batch", cps, pg.count())
	}
}

// When the grace period ends first, Stop cancels the batch; nothing of it is committed.
func TestStopDeadlineCancels(t *testing.T) {
	es, pg := newFakeES(), newFakePG()
	es.add("ev-2026.04.01", 0, doc("a", day), true)
	block := make(chan struct{})
	var once sync.Once
	pg.beforeCommit = func(pgstore.Batch) { once.Do(func() { <-block }) }
	a := New(es, pg, Options{Config: testConfig()})
	done := make(chan error, 1)
	go func() { done <- a.Run(context.Background()) }()
	waitFor(t, "a read", func() bool { es.mu.Lock(); defer es.mu.Unlock(); return es.reads > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := a.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stop: %v", err)
	}
	close(block)
	<-done
}

func TestMetricsLagAndPool(t *testing.T) {
	es, pg := newFakeES(), newFakePG()
	old := time.Now().Add(-time.Hour)
	es.add("ev-2026.04.01", 0, doc("a", old), false) // not globally checkpointed: cannot archive
	es.shards[0].visible = 0
	reg := prometheus.NewRegistry()
	a := New(es, pg, Options{Config: testConfig(), Metrics: NewMetrics(reg, fakePool{})})
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(context.Background()) }()
	defer func() { _ = a.Stop(context.Background()); <-done }()
	waitFor(t, "lag measured", func() bool { return a.metrics.lagSeconds() >= 3599 })
	if v := metrictest.Sum(t, reg, "spillway_archiver_pool_max_connections"); v != 4 {
		t.Fatalf("pool max %v", v)
	}
	if v := metrictest.Sum(t, reg, "spillway_archiver_leader"); v != 1 {
		t.Fatalf("leader %v", v)
	}
	es.advance()
	waitFor(t, "caught up", func() bool { return a.metrics.lagSeconds() == 0 && pg.count() == 1 })
}

// While PostgreSQL is unreachable the archiver can read no checkpoint, but nobody can move one
// either: the lag goes on being measured from the last ones it knew, so that it grows with the
// outage instead of freezing at its last value (0 when it was caught up).
func TestLagGrowsWhilePostgresIsDown(t *testing.T) {
	es, pg := newFakeES(), newFakePG()
	es.add("ev-2026.04.01", 0, doc("a", time.Now()), true)
	a := start(t, es, pg, testConfig(), nil)
	waitFor(t, "caught up", func() bool { return allArchived(es, pg) == nil && a.metrics.lagSeconds() == 0 })
	pg.setDown(true)
	es.add("ev-2026.04.01", 0, doc("b", time.Now().Add(-time.Hour)), true)
	es.mu.Lock()
	es.shards[0].visible = 1 // Elasticsearch's periodic refresh
	es.mu.Unlock()
	waitFor(t, "the lag of an event nobody can archive", func() bool { return a.metrics.lagSeconds() >= 3599 })
	pg.setDown(false)
	waitFor(t, "caught up again", func() bool { return allArchived(es, pg) == nil && a.metrics.lagSeconds() == 0 })
}

type fakePool struct{}

func (fakePool) Stat() (int32, int32) { return 2, 1 }
func (fakePool) MaxConns() int32      { return 4 }

// What Elasticsearch returns that the archive cannot store stops the shard with an error
// instead of a row without identity (esstore reads unreadable times as the zero time).
func TestStorableRejectsWhatItCannotStore(t *testing.T) {
	good := doc("x", day)
	if err := storable(good); err != nil {
		t.Fatalf("good: %v", err)
	}
	for name, mutate := range map[string]func(*event.Event){
		"no id":         func(e *event.Event) { e.ID = "" },
		"no client":     func(e *event.Event) { e.ClientID = "" },
		"no timestamp":  func(e *event.Event) { e.Timestamp = time.Time{} },
		"no ingestedAt": func(e *event.Event) { e.IngestedAt = time.Time{} },
	} {
		e := good
		mutate(&e)
		if err := storable(e); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if _, err := eventsOf([]event.Sequenced{{SeqNo: 7, Event: good}, {SeqNo: 8, Event: e}}); err == nil || !strings.Contains(err.Error(), "_seq_no 8") {
			t.Errorf("%s: batch error %v, want one naming _seq_no 8", name, err)
		}
	}
	e := good
	e.Payload = nil
	if evs, err := eventsOf([]event.Sequenced{{Event: e}}); err != nil || len(evs) != 1 || evs[0].Payload != nil {
		t.Fatalf("absent payload: %+v %v", evs, err)
	}
}

// The leader creates day partitions ahead of the feed, from yesterday to PartitionsAhead past
// tomorrow (ingest's max_future_skew: the newest day an event may carry), before its first round.
func TestRunCreatesPartitionsAhead(t *testing.T) {
	es, pg := newFakeES(), newFakePG()
	now := time.Date(2026, 4, 1, 13, 0, 0, 0, time.UTC)
	a := New(es, pg, Options{Config: testConfig(), Now: func() time.Time { return now }, PartitionsAhead: 48 * time.Hour})
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(context.Background()) }()
	waitFor(t, "partitions ensured", func() bool { pg.mu.Lock(); defer pg.mu.Unlock(); return len(pg.ensured) > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	<-done
	pg.mu.Lock()
	defer pg.mu.Unlock()
	var days []string
	for _, ts := range pg.ensured {
		if d := ts.UTC().Format(time.DateOnly); !slices.Contains(days, d) {
			days = append(days, d)
		}
	}
	want := []string{"2026-03-31", "2026-04-01", "2026-04-02", "2026-04-03", "2026-04-04"}
	if !slices.Equal(days, want) {
		t.Fatalf("partitions ensured for %v, want %v", days, want)
	}
	if pg.claimed != "ev" {
		t.Fatalf("prefix claimed %q, want ev", pg.claimed)
	}
}

// Another prefix's schema stops Run with the error instead of a retry loop.
func TestRunRefusesAnotherPrefixSchema(t *testing.T) {
	es, pg := newFakeES(), newFakePG()
	pg.claimed = "other"
	a := New(es, pg, Options{Config: testConfig()})
	err := a.Run(context.Background())
	if !errors.Is(err, pgstore.ErrOtherPrefix) {
		t.Fatalf("Run: %v, want ErrOtherPrefix", err)
	}
}
