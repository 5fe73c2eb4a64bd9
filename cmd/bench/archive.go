package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/spillway/spillway/internal/bench"
	"github.com/spillway/spillway/pkg/pgstore"
)

// archive runs S6: a backlog loaded into Elasticsearch, drained by the archiver process into an
// empty schema, against raw COPY of as many rows of the same shape into another empty schema.
func (r *runner) archive(ctx context.Context) error {
	prefix := r.run + "bklg"
	n := r.plan.S6Rows
	es, err := r.es(ctx, prefix)
	if err != nil {
		return err
	}
	size, conc := r.bestBulk()
	logf("S6: loading a backlog of %s events", bench.Num(float64(n)))
	if _, err := bench.RawBulk(ctx, bench.RawBulkConfig{ESURL: r.st.esURL, IndexPrefix: prefix, Duration: time.Hour, Count: int64(n),
		BulkSize: size, Concurrency: conc, EventSize: 1024, Clients: 1000, IDPrefix: "bl-" + r.run + "-"}); err != nil {
		return err
	}
	if err := es.Refresh(ctx); err != nil {
		return err
	}
	time.Sleep(5 * time.Second)

	// Baseline: raw COPY, one statement on one connection, into an empty indexed events table.
	rawDB, err := r.pg(ctx, r.run+"_raw", "spillway-bench-raw", 2)
	if err != nil {
		return err
	}
	if err := rawDB.Migrate(ctx); err != nil {
		rawDB.Close()
		return err
	}
	rawPool, err := bench.OpenDB(ctx, r.st.pgURL, r.run+"_raw", "spillway-bench-raw", 2)
	if err != nil {
		rawDB.Close()
		return err
	}
	raw, err := bench.RawCopy(ctx, rawPool, rawDB, n, 0, 1024, 1000)
	rawPool.Close()
	rawDB.Close()
	if err != nil {
		return err
	}
	r.rep.RawCopy = raw
	logf("raw COPY: %.0f rows/s", raw.RowsPerSecond)
	time.Sleep(3 * time.Second)

	// The archiver, as a process, with its default configuration, into an empty archive.
	d, err := r.drain(ctx, prefix, r.run+"_s6", n, "s6")
	if err != nil {
		return err
	}
	ratio := d.rate / raw.RowsPerSecond
	r.rep.Runs["S6"] = map[string]any{"rows": d.exact, "elapsed_seconds": d.elapsed.Seconds(), "rows_per_second": d.rate, "max_connections": d.maxConns, "cores": d.cores}
	logf("S6: %d rows in %s: %.0f rows/s (%.2f × raw COPY), max %d connections; %s", d.exact, d.elapsed.Round(time.Millisecond), d.rate, ratio, d.maxConns, d.cores)
	r.set(bench.Scenario{ID: "S6",
		Measured: fmt.Sprintf("%s rows in %.1f s = %s rows/s (from process start); at most %d connections in pg_stat_activity; %s",
			bench.Num(float64(d.exact)), d.elapsed.Seconds(), bench.Num(d.rate), d.maxConns, d.cores),
		Baseline: fmt.Sprintf("raw COPY %s rows/s", bench.Num(raw.RowsPerSecond)), Ratio: bench.Ptr(ratio),
		Met: bench.Ptr(n >= 1_000_000 && d.exact == int64(n) && ratio >= 0.5 && d.rate >= 10000 && d.maxConns <= 4)})

	// S6g: the same backlog into an archive that already holds many days: its day partitions
	// keep the write into today's as cheap as into an empty table.
	grownSchema := r.run + "_s6g"
	gdb, err := r.pg(ctx, grownSchema, "spillway-bench-grow", 2)
	if err != nil {
		return err
	}
	if err := gdb.Migrate(ctx); err != nil {
		gdb.Close()
		return err
	}
	logf("S6g: growing an archive to %s rows over %d days", bench.Num(float64(r.plan.S6GrowRows)), r.plan.S6GrowDays)
	gpool, err := bench.OpenDB(ctx, r.st.pgURL, grownSchema, "spillway-bench-grow", 2)
	if err != nil {
		gdb.Close()
		return err
	}
	grown, err := bench.Grow(ctx, gpool, gdb, r.plan.S6GrowRows, r.plan.S6GrowDays, 256, 1000)
	gpool.Close()
	gdb.Close()
	if err != nil {
		return err
	}
	logf("S6g: grown in %.0f s, %.1f GiB", grown.Elapsed, float64(grown.Bytes)/(1<<30))
	time.Sleep(3 * time.Second)
	g, err := r.drain(ctx, prefix, grownSchema, n, "s6g")
	if err != nil {
		return err
	}
	gratio := g.rate / d.rate
	r.rep.Runs["S6g"] = map[string]any{"rows": g.exact, "elapsed_seconds": g.elapsed.Seconds(), "rows_per_second": g.rate,
		"max_connections": g.maxConns, "grown_rows": grown.Rows, "grown_days": grown.Days, "grown_bytes": grown.Bytes, "cores": g.cores}
	logf("S6g: %d rows in %s: %.0f rows/s (%.2f × the empty archive), max %d connections; %s", g.exact, g.elapsed.Round(time.Millisecond), g.rate, gratio, g.maxConns, g.cores)
	r.set(bench.Scenario{ID: "S6g",
		Measured: fmt.Sprintf("%s rows/s into an archive of %s rows over %d days (%.1f GiB); at most %d connections",
			bench.Num(g.rate), bench.Num(float64(grown.Rows)), grown.Days, float64(grown.Bytes)/(1<<30), g.maxConns),
		Baseline: fmt.Sprintf("S6, the empty archive: %s rows/s", bench.Num(d.rate)), Ratio: bench.Ptr(gratio),
		Met: bench.Ptr(grown.Rows >= 10_000_000 && grown.Days >= 30 && g.exact-grown.Rows == int64(n) && gratio >= 0.8 && g.maxConns <= 4)})
	return nil
}

// drained is one archiver run over a backlog.
type drained struct {
	rate     float64
	exact    int64 // rows in the archive afterwards
	maxConns int
	elapsed  time.Duration
	cores    CPUCores
}

// drain starts the archiver process on the backlog of prefix into schema and waits until its
// checkpoints account for n rows; it samples the connections the archiver holds meanwhile.
func (r *runner) drain(ctx context.Context, prefix, schema string, n int, name string) (drained, error) {
	var d drained
	sampler, err := r.pg(ctx, schema, "spillway-bench", 2)
	if err != nil {
		return d, err
	}
	defer sampler.Close()
	counts, err := bench.OpenDB(ctx, r.st.pgURL, schema, "spillway-bench", 1)
	if err != nil {
		return d, err
	}
	defer counts.Close()
	addr, err := freeAddr()
	if err != nil {
		return d, err
	}
	start := time.Now()
	ar, err := r.st.start(ctx, "archiver-"+name, "archiver", []string{"run"}, r.spillwayEnv(addr, "", r.st.esURL, prefix, r.st.pgURL, schema), addr, false)
	if err != nil {
		return d, err
	}
	defer ar.stop()
	cpu := r.measureCPU(map[string]int{"archiver": ar.pid()})     // PostgreSQL's backends are most of "everything else"
	deadline := start.Add(time.Duration(n/500+120) * time.Second) // fails the scenario long before: 500 rows/s
	var rows int64
	for {
		if c, err := sampler.Connections(ctx, "spillway-archiver"); err == nil {
			d.maxConns = max(d.maxConns, c)
		}
		_ = counts.QueryRow(ctx, "SELECT coalesce(sum(rows), 0) FROM archive_checkpoints").Scan(&rows)
		if rows >= int64(n) {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return d, fmt.Errorf("%s: archiver copied %d of %d rows in %s", name, rows, n, time.Since(start).Round(time.Second))
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.elapsed = time.Since(start)
	d.cores = cpu.stop()
	if err := counts.QueryRow(ctx, "SELECT count(*) FROM events").Scan(&d.exact); err != nil {
		return d, err
	}
	d.rate = float64(n) / d.elapsed.Seconds()
	return d, nil
}

// sampleConns records in *max the most connections application app held, every 100 ms,
// until the returned function is called.
func sampleConns(ctx context.Context, db *pgstore.Store, app string, maxConns *int) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if c, err := db.Connections(ctx, app); err == nil {
				*maxConns = max(*maxConns, c)
			}
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}
