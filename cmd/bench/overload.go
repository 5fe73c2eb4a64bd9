package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spillway/spillway/internal/bench"
	"github.com/spillway/spillway/internal/loadgen"
)

// overload runs S7: 100-event requests offered at 5 × S1's measured capacity while the
// Elasticsearch node is stopped for S7Down in the middle; ingest's RSS is sampled from
// /proc, refusals are timed, and every acknowledged id is looked up afterwards.
func (r *runner) overload(ctx context.Context) error {
	capacity := 0.0
	if r.s1Capacity > 0 {
		capacity = r.s1Capacity
	} else if r.rawBest != nil {
		capacity = r.rawBest.DocsPerSecond
	} else {
		return errors.New("S7 needs S1's capacity (or the raw baseline): run the ingest or raw phase too")
	}
	prefix := r.run + "ovl"
	if _, err := r.es(ctx, prefix); err != nil {
		return err
	}
	in, err := r.startIngest(ctx, "ingest-overload", r.st.esURL, prefix)
	if err != nil {
		return err
	}
	defer in.stop()
	ackedPath := filepath.Join(r.st.out, "s7-acked-ids.txt")
	f, err := os.Create(ackedPath)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var wmu sync.Mutex
	acked := writerFunc(func(p []byte) (int, error) { wmu.Lock(); defer wmu.Unlock(); return w.Write(p) })

	// RSS sampler.
	var maxRSS int64
	stopRSS := make(chan struct{})
	var rssWG sync.WaitGroup
	rssWG.Add(1)
	go func() {
		defer rssWG.Done()
		for {
			if cur, _, err := rss(in.pid()); err == nil {
				maxRSS = max(maxRSS, cur)
			}
			select {
			case <-stopRSS:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()

	// Elasticsearch: up for S7Before, stopped for S7Down, then started again.
	// The load lasts until the node has been back for S7After (Until), however long its
	// restart takes on a loaded machine; the duration only bounds it.
	duration := r.plan.S7Before + r.plan.S7Down + 3*time.Minute + r.plan.S7After
	var downAt, upAt time.Time
	var esErr error
	// Ingest's metrics and the cores used are read at the phase boundaries, so that the report
	// can say where admitted requests spent their time while the node was up and overloaded
	// and after it came back.
	var atStop, atUp metrics
	var stopCores CPUCores
	cpu := r.measureCPU(map[string]int{"ingest": in.pid(), "load generator": os.Getpid()})
	waitProfile := r.profile(in, max(r.plan.S7Before-2*time.Second, time.Second), "ingest-S7")
	esDone := make(chan struct{})
	until := make(chan struct{})
	go func() {
		defer close(esDone)
		defer func() {
			select {
			case <-time.After(r.plan.S7After):
			case <-ctx.Done():
			}
			close(until)
		}()
		select {
		case <-time.After(r.plan.S7Before):
		case <-ctx.Done():
			return
		}
		atStop = scrape(in)
		stopCores = cpu.stop()
		logf("S7: stopping Elasticsearch")
		if esErr = r.st.stopES(); esErr != nil {
			return
		}
		downAt = time.Now()
		select {
		case <-time.After(r.plan.S7Down):
		case <-ctx.Done():
		}
		logf("S7: starting Elasticsearch again")
		esErr = r.st.up(context.WithoutCancel(ctx))
		upAt = time.Now()
		atUp = scrape(in)
		logf("S7: Elasticsearch answered %s after it was stopped", upAt.Sub(downAt).Round(100*time.Millisecond))
	}()
	offered := 5 * capacity
	before := scrape(in)
	res, lgErr := r.lg(ctx, "S7", loadgen.Config{IngestURL: "http://" + in.addr, Duration: duration, Rate: offered / 100,
		Concurrency: 1000, EventsPerRequest: 100, EventSize: 1024, Timeout: 15 * time.Second, AckedIDs: acked, Until: until})
	after := scrape(in)
	<-esDone
	waitProfile()
	var overloaded, recovering bulkStats
	if atStop != nil {
		overloaded = diffBulk(before, atStop)
		overloaded.CPU = stopCores
	}
	if atUp != nil {
		recovering = diffBulk(atUp, after)
	}
	close(stopRSS)
	rssWG.Wait()
	_, peak, _ := rss(in.pid())
	wmu.Lock()
	ferr := w.Flush()
	wmu.Unlock()
	f.Close()
	if lgErr != nil {
		return lgErr
	}
	if esErr != nil {
		return fmt.Errorf("S7: elasticsearch: %w", esErr)
	}
	if ferr != nil {
		return ferr
	}

	// Every acknowledged id must be in Elasticsearch.
	es, err := r.es(ctx, prefix)
	if err != nil {
		return err
	}
	if err := es.Refresh(ctx); err != nil {
		return err
	}
	ids, err := readLines(ackedPath)
	if err != nil {
		return err
	}
	var found int64
	for i := 0; i < len(ids); i += 10000 {
		n, err := r.count(ctx, prefix, map[string]any{"ids": map[string]any{"values": ids[i:min(i+10000, len(ids))]}})
		if err != nil {
			return fmt.Errorf("S7: look up acknowledged ids: %w", err)
		}
		found += n
	}
	lost := int64(len(ids)) - found

	var refusalP99 float64
	var parts []string
	for _, st := range []string{"429", "503"} {
		if p, ok := res.LatencyByStatus[st]; ok {
			refusalP99 = max(refusalP99, p.P99)
			srv, n := serverP99(before, after, st)
			parts = append(parts, fmt.Sprintf("%s p99 %.1f ms at the client (n=%d), ≤ %.0f ms inside ingest (n=%.0f)", st, p.P99, p.N, srv, n))
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "no 429/503 answered")
	}
	ok201 := res.LatencyByStatus["201"]
	downFor := upAt.Sub(downAt)
	r.rep.Runs["S7_summary"] = map[string]any{"capacity_events_per_second": capacity, "offered_events_per_second": offered,
		"max_rss_bytes": maxRSS, "peak_rss_bytes_vmhwm": peak, "acknowledged": len(ids), "found": found, "lost": lost,
		"elasticsearch_down_seconds": downFor.Seconds(), "overloaded_node_up": overloaded, "after_restart": recovering}
	logf("S7: max RSS %.0f MB (VmHWM %.0f MB), %s, acknowledged %d, lost %d", float64(maxRSS)/1e6, float64(peak)/1e6, strings.Join(parts, ", "), len(ids), lost)
	r.set(bench.Scenario{ID: "S7",
		Measured: fmt.Sprintf("offered %s events/s (5 × S1's %s) in 100-event requests; Elasticsearch down %.0f s; ingest RSS max %.0f MB (VmHWM %.0f MB, 10⁶ bytes); %s; 201 p99 %.0f ms; %s events acknowledged, %d lost; statuses %s",
			bench.Num(offered), bench.Num(capacity), downFor.Seconds(), float64(maxRSS)/1e6, float64(peak)/1e6, strings.Join(parts, ", "),
			ok201.P99, bench.Num(float64(len(ids))), lost, statusText(res.Status)),
		Met: bench.Ptr(peak <= 300e6 && maxRSS <= 300e6 && refusalP99 <= 50 && ok201.P99 <= 1000 && lost == 0 && len(ids) > 0 && downFor >= r.plan.S7Down),
		Notes: fmt.Sprintf("while the node was up and overloaded (before the stop): %s; after the restart: %s; profile: pprof/ingest-S7.pprof (before the stop)",
			overloaded, recovering)})
	return nil
}
