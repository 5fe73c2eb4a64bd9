package archive_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/archivetest"
	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/archive"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/pgstore"
)

// benchEvent is the i-th event of the backlog: about 1 KB of payload.
func benchEvent(i int, base, now time.Time) event.Event {
	var sb strings.Builder
	for sb.Len() < 900 {
		fmt.Fprintf(&sb, "%x", uint32(i)*2654435761+uint32(sb.Len()))
	}
	p, _ := json.Marshal(map[string]any{"n": i, "kind": "page_view", "user": fmt.Sprintf("u-%d", i%5000),
		"ok": i%3 == 0, "data": sb.String()})
	return event.Event{ID: fmt.Sprintf("bench-%08d", i), ClientID: fmt.Sprintf("client-%d", i%1000), Type: "page_view",
		Timestamp: base.Add(-time.Duration(i) * time.Millisecond), IngestedAt: now, Payload: p}
}

// BenchmarkDrainBacklog measures how fast the archiver drains a backlog already in
// Elasticsearch, against raw COPY of the same rows into the same table, and the most
// connections pg_stat_activity showed for the archiver meanwhile. The backlog size comes from
// SPILLWAY_BENCH_EVENTS (default 20,000); the closing figure used 1,000,000:
//
//	SPILLWAY_BENCH_EVENTS=1000000 go test -run '^$' -bench DrainBacklog -benchtime 1x ./pkg/archive/
func BenchmarkDrainBacklog(b *testing.B) {
	n := 20000
	if v, err := strconv.Atoi(os.Getenv("SPILLWAY_BENCH_EVENTS")); err == nil && v > 0 {
		n = v
	}
	b.ReportAllocs()
	b.StopTimer() // only the drain is timed
	esCfg := testenv.ES(b)
	es, _ := archivetest.Stores(b, esCfg, testenv.PG(b), "spillway-bench")
	ctx := context.Background()
	base, now := time.Now().UTC(), time.Now().UTC()

	// Load the backlog with concurrent raw _bulk requests.
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				lo := int(next.Add(2000)) - 2000
				if lo >= n {
					return
				}
				evs := make([]event.Event, 0, 2000)
				for i := lo; i < min(lo+2000, n); i++ {
					evs = append(evs, benchEvent(i, base, now))
				}
				if _, _, err := testenv.BulkCreate(ctx, es, evs); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	if err := es.Refresh(ctx); err != nil {
		b.Fatal(err)
	}
	b.Logf("indexed %d events in %s (%.0f/s)", n, time.Since(start).Round(time.Millisecond), float64(n)/time.Since(start).Seconds())

	// Baseline: one raw COPY of the same rows into an empty events table with its indexes.
	rawCfg := testenv.PG(b)
	raw := migrated(b, rawCfg, "spillway-bench-raw")
	// A COPY routes rows only to partitions that exist when it begins.
	if err := raw.EnsurePartitions(ctx, benchEvent(0, base, now).Timestamp, benchEvent(n-1, base, now).Timestamp); err != nil {
		b.Fatal(err)
	}
	i := 0
	start = time.Now()
	copied, err := testenv.RawCopy(ctx, testenv.DB(b, rawCfg), "events", []string{"id", "client_id", "type", "ts", "ingested_at", "payload"}, func() ([]any, bool) {
		if i >= n {
			return nil, false
		}
		e := benchEvent(i, base, now)
		i++
		return []any{e.ID, e.ClientID, e.Type, event.Truncate(e.Timestamp), event.Truncate(e.IngestedAt), []byte(e.Payload)}, true
	})
	if err != nil || copied != int64(n) {
		b.Fatalf("raw copy: %d %v", copied, err)
	}
	rawRate := float64(n) / time.Since(start).Seconds()
	raw.Close()

	var rate float64
	var maxConns int64
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		b.StopTimer()
		pgCfg := testenv.PG(b)
		app := testenv.Name("spillway-bench-")
		pg := migrated(b, pgCfg, app)
		sampler := migrated(b, pgCfg, "spillway-bench-sampler")
		var seen atomic.Int64
		stop := make(chan struct{})
		var swg sync.WaitGroup
		swg.Add(1)
		go func() {
			defer swg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				if c, err := sampler.Connections(ctx, app); err == nil && int64(c) > seen.Load() {
					seen.Store(int64(c))
				}
			}
		}()
		a := archive.New(es, archive.Postgres(pg), archive.Options{Config: config.Archiver{BatchSize: 5000,
			PollInterval: 100 * time.Millisecond, BackoffMax: time.Second, VerifyBucket: time.Hour}})
		done := make(chan struct{})
		b.StartTimer()
		start := time.Now()
		go func() { defer close(done); _ = a.Run(ctx) }()
		for {
			ok, err := archivetest.CaughtUp(ctx, es, pg)
			if err != nil {
				b.Fatal(err)
			}
			if ok {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		elapsed := time.Since(start)
		b.StopTimer()
		_ = a.Stop(ctx)
		<-done
		close(stop)
		swg.Wait()
		rate = float64(n) / elapsed.Seconds()
		maxConns = max(maxConns, seen.Load())
		var rows int64
		if err := testenv.DB(b, pgCfg).QueryRow(ctx, "SELECT count(*) FROM events").Scan(&rows); err != nil || rows != int64(n) {
			b.Fatalf("archived %d of %d rows: %v", rows, n, err)
		}
		b.Logf("archived %d events in %s: %.0f rows/s; raw COPY %.0f rows/s (ratio %.2f); max connections in pg_stat_activity %d",
			n, elapsed.Round(time.Millisecond), rate, rawRate, rate/rawRate, seen.Load())
		pg.Close()
		sampler.Close()
	}
	b.ReportMetric(rate, "rows/s")
	b.ReportMetric(rawRate, "raw-copy-rows/s")
	b.ReportMetric(rate/rawRate, "ratio")
	b.ReportMetric(float64(maxConns), "max-conns")
}

func migrated(b *testing.B, cfg config.Postgres, app string) *pgstore.Store {
	b.Helper()
	s, err := pgstore.Open(context.Background(), cfg, pgstore.Options{ApplicationName: app}, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Migrate(context.Background()); err != nil {
		b.Fatal(err)
	}
	return s
}
