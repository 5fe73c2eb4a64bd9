package archive_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillway/spillway/internal/archivetest"
	"github.com/spillway/spillway/internal/metrictest"
	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/archive"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/pgstore"
)

// retentionNow is the clock of the retention tests: noon, so "midnight of now − N days" is
// unambiguous.
var retentionNow = time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)

func day(n int) time.Time { return retentionNow.Truncate(24*time.Hour).AddDate(0, 0, -n) }

// dailyEvents makes k events on each of the days n = from..to before retentionNow.
func dailyEvents(prefix string, from, to, k int) []event.Event {
	var out []event.Event
	for n := from; n >= to; n-- {
		for i := 0; i < k; i++ {
			ts := day(n).Add(time.Duration(i) * time.Hour)
			out = append(out, event.Event{ID: fmt.Sprintf("%s-%02d-%02d", prefix, n, i), ClientID: fmt.Sprintf("c%d", i%2),
				Timestamp: ts, IngestedAt: ts})
		}
	}
	return out
}

func retentionArchiver(es *esstore.Store, pg *pgstore.Store, reg prometheus.Registerer) *archive.Archiver {
	return archive.New(es, archive.Postgres(pg), archive.Options{Config: archiverConfig(), Now: func() time.Time { return retentionNow },
		Indices: es, Boundary: pg, Metrics: archive.NewMetrics(reg, nil)})
}

func indexNames(t *testing.T, es *esstore.Store) []string {
	t.Helper()
	idx, err := es.Indices(testenv.Context(t, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range idx {
		names = append(names, i.Name)
	}
	return names
}

func actions(rep *archive.RetentionReport) map[string]string {
	out := map[string]string{}
	for _, i := range rep.Indices {
		out[i.Day.Format(time.DateOnly)] = i.Action
	}
	return out
}

func boundary(t *testing.T, pg *pgstore.Store, es *esstore.Store) time.Time {
	t.Helper()
	b, _, err := pg.ColdBoundary(testenv.Context(t, time.Minute), es.Prefix())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Retention drops only what PostgreSQL provably holds, oldest first, moving the boundary over it
// first; an index with an unarchived event is kept, and so is every index after it.
func TestIntegrationRetentionKeepsUnarchivedIndexAndEverythingAfter(t *testing.T) {
	es, pg := archivetest.Stores(t, testenv.ES(t), testenv.PG(t), "spillway-test")
	ctx := testenv.Context(t, 3*time.Minute)
	if err := archivetest.Index(ctx, es, dailyEvents("r", 10, 1, 4)); err != nil {
		t.Fatal(err)
	}
	r := startArchiver(t, es, pg, archiverConfig())
	archivetest.WaitCaughtUp(t, es, pg, time.Minute)
	r.stop(t)
	// An event indexed into day −6's index after archiving, with the archiver stopped.
	late := event.Event{ID: "late", ClientID: "c0", Timestamp: day(6).Add(30 * time.Minute), IngestedAt: retentionNow}
	if _, err := testenv.Put(ctx, es, late); err != nil {
		t.Fatal(err)
	}
	before := indexNames(t, es)
	if len(before) != 10 {
		t.Fatalf("indices %v", before)
	}

	reg := prometheus.NewRegistry()
	a := retentionArchiver(es, pg, reg)
	// Horizon: midnight of day −3, so days −10..−4 are candidates.
	req := archive.RetentionRequest{OlderThan: 3*24*time.Hour + time.Hour}
	rep, err := a.Retention(ctx, req, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for n := 10; n >= 4; n-- {
		want[day(n).Format(time.DateOnly)] = map[bool]string{true: archive.ActionDrop, false: archive.ActionSkipped}[n > 6]
	}
	want[day(6).Format(time.DateOnly)] = archive.ActionKept
	if got := actions(rep); !mapsEqual(got, want) || !rep.Horizon.Equal(day(3)) || rep.Kept() != 1 {
		t.Fatalf("listing: horizon %s, actions %v, want %v", rep.Horizon, got, want)
	}
	if !strings.Contains(rep.Indices[4].Reason, "not archived") && !strings.Contains(rep.Indices[4].Reason, "behind") {
		t.Fatalf("kept for %q", rep.Indices[4].Reason)
	}
	if after := indexNames(t, es); !slices.Equal(after, before) || !boundary(t, pg, es).IsZero() {
		t.Fatalf("listing changed something: %v, boundary %s", after, boundary(t, pg, es))
	}

	req.Apply = true
	if rep, err = a.Retention(ctx, req, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	for n := 10; n > 6; n-- {
		want[day(n).Format(time.DateOnly)] = archive.ActionDropped
	}
	if got := actions(rep); !mapsEqual(got, want) || rep.Kept() != 1 {
		t.Fatalf("apply: actions %v, want %v", got, want)
	}
	if b := boundary(t, pg, es); !b.Equal(day(6)) || !rep.BoundaryAfter.Equal(day(6)) || !rep.BoundaryBefore.IsZero() {
		t.Fatalf("boundary %s (report %s), want the end of day −7 = %s", b, rep.BoundaryAfter, day(6))
	}
	if after := indexNames(t, es); !slices.Equal(after, before[4:]) {
		t.Fatalf("indices after: %v, want %v", after, before[4:])
	}
	if v := metrictest.Sum(t, reg, "spillway_archiver_indices_dropped_total"); v != 4 {
		t.Fatalf("dropped metric %v", v)
	}
	// Every dropped event is still in PostgreSQL.
	for _, e := range dailyEvents("r", 10, 7, 4) {
		if _, err := pg.Get(ctx, e.ID, time.Time{}); err != nil {
			t.Fatalf("%s: %v", e.ID, err)
		}
	}

	// An index recreated below the boundary (here by hand; in production only a misconfigured
	// ingest.max_past_age allows it) is archived, verified and dropped; the boundary stays.
	stray := event.Event{ID: "stray", ClientID: "c1", Timestamp: day(9).Add(time.Hour), IngestedAt: retentionNow}
	if _, err := testenv.Put(ctx, es, stray); err != nil {
		t.Fatal(err)
	}
	r2 := startArchiver(t, es, pg, archiverConfig())
	archivetest.WaitCaughtUp(t, es, pg, time.Minute)
	r2.stop(t)
	if _, err := pg.Get(ctx, "late", time.Time{}); err != nil {
		t.Fatalf("the late event was not archived: %v", err)
	}
	rep, err = a.Retention(ctx, archive.RetentionRequest{OlderThan: 8 * 24 * time.Hour, Apply: true}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(rep); len(got) != 1 || got[day(9).Format(time.DateOnly)] != archive.ActionDropped {
		t.Fatalf("stray index: %v", got)
	}
	if b := boundary(t, pg, es); !b.Equal(day(6)) {
		t.Fatalf("boundary moved back to %s", b)
	}

	// Now that the late event is archived, the rest goes, and the boundary follows.
	if rep, err = a.Retention(ctx, archive.RetentionRequest{OlderThan: req.OlderThan, Apply: true}, 0); err != nil || rep.Kept() != 0 {
		t.Fatalf("second pass: %+v %v", rep, err)
	}
	if b := boundary(t, pg, es); !b.Equal(day(3)) {
		t.Fatalf("boundary %s, want %s", b, day(3))
	}
	if after := indexNames(t, es); !slices.Equal(after, before[7:]) {
		t.Fatalf("indices after: %v, want %v", after, before[7:])
	}
}

// A closed index cannot be verified: it is kept, with everything after it.
func TestIntegrationRetentionKeepsClosedIndex(t *testing.T) {
	esCfg := testenv.ES(t)
	es, pg := archivetest.Stores(t, esCfg, testenv.PG(t), "spillway-test")
	ctx := testenv.Context(t, 2*time.Minute)
	if err := archivetest.Index(ctx, es, dailyEvents("c", 6, 5, 2)); err != nil {
		t.Fatal(err)
	}
	r := startArchiver(t, es, pg, archiverConfig())
	archivetest.WaitCaughtUp(t, es, pg, time.Minute)
	r.stop(t)
	res, err := http.Post(esCfg.URLs[0]+"/"+es.IndexFor(day(6))+"/_close", "application/json", nil)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("close: %v %v", res, err)
	}
	res.Body.Close()
	rep, err := retentionArchiver(es, pg, nil).Retention(ctx, archive.RetentionRequest{OlderThan: 3 * 24 * time.Hour, Apply: true}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(rep); got[day(6).Format(time.DateOnly)] != archive.ActionKept || got[day(5).Format(time.DateOnly)] != archive.ActionSkipped ||
		!strings.Contains(rep.Indices[0].Reason, "closed") {
		t.Fatalf("actions %v %+v", got, rep.Indices)
	}
	if len(indexNames(t, es)) != 2 || !boundary(t, pg, es).IsZero() {
		t.Fatal("something was dropped or the boundary moved")
	}
}

// Retention in `archiver run` (archiver.retention_after) drops what the command would, beside
// the archiving loop.
func TestIntegrationRunAppliesRetention(t *testing.T) {
	es, pg := archivetest.Stores(t, testenv.ES(t), testenv.PG(t), "spillway-test")
	ctx := testenv.Context(t, 2*time.Minute)
	if err := archivetest.Index(ctx, es, dailyEvents("p", 6, 1, 3)); err != nil {
		t.Fatal(err)
	}
	// Archived first: a pass that ran before the archiver caught up would keep the days (that
	// path is the test above) and try again only an hour later.
	r := startArchiver(t, es, pg, archiverConfig())
	archivetest.WaitCaughtUp(t, es, pg, time.Minute)
	r.stop(t)

	cfg := archiverConfig()
	cfg.RetentionAfter = 3 * 24 * time.Hour
	reg := prometheus.NewRegistry()
	a := archive.New(es, archive.Postgres(pg), archive.Options{Config: cfg, Now: func() time.Time { return retentionNow },
		Indices: es, Boundary: pg, RetentionGrace: 10 * time.Millisecond, Metrics: archive.NewMetrics(reg, pg)})
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(context.Background()) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = a.Stop(sctx)
		<-done
	}()
	waitUntil(t, "a retention pass in run", time.Minute, func() bool {
		return metrictest.Sum(t, reg, "spillway_archiver_retention_runs_total") > 0
	})
	if ok := metrictest.Sum(t, reg, "spillway_archiver_retention_runs_total", "result", "ok"); ok != 1 {
		t.Fatalf("retention runs ok=%v, want 1", ok)
	}
	if b := boundary(t, pg, es); !b.Equal(day(3)) {
		t.Fatalf("boundary %s, want %s", b, day(3))
	}
	if names := indexNames(t, es); len(names) != 3 || names[0] != es.IndexFor(day(3)) {
		t.Fatalf("indices %v", names)
	}
	if v := metrictest.Sum(t, reg, "spillway_archiver_indices_dropped_total"); v != 3 {
		t.Fatalf("dropped metric %v", v)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
