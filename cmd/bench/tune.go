package main

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/spillway/spillway/internal/bench"
	"github.com/spillway/spillway/internal/loadgen"
)

// tuneConfigs are the ingest settings compared by the tune phase, the defaults first.
var tuneConfigs = []struct {
	name string
	set  []string
}{
	{"defaults", nil},
	{"bulk_workers=1", []string{"ingest.bulk_workers=1"}},
	{"bulk_workers=4", []string{"ingest.bulk_workers=4"}},
	{"bulk_workers=8", []string{"ingest.bulk_workers=8"}},
	{"bulk_flush_interval=2ms", []string{"ingest.bulk_flush_interval=2ms"}},
	{"bulk_flush_interval=20ms", []string{"ingest.bulk_flush_interval=20ms"}},
	{"bulk_flush_bytes=1MiB", []string{"ingest.bulk_flush_bytes=1MiB"}},
}

// tune compares ingest settings on the three ingest workloads (S1-, S2- and S3-shaped). Every
// configuration runs as its own ingest process at the same time; the workloads visit them in
// turn, round after round, so that the machine's swings hit every configuration alike. The
// medians over rounds are reported.
func (r *runner) tune(ctx context.Context) error {
	prefix := r.run + "tune"
	if _, err := r.es(ctx, prefix); err != nil {
		return err
	}
	saved := r.ingestSet
	defer func() { r.ingestSet = saved }()
	procs := make([]*proc, len(tuneConfigs))
	for i, c := range tuneConfigs {
		r.ingestSet = append(append([]string(nil), saved...), c.set...)
		p, err := r.startIngest(ctx, "ingest-tune-"+strings.ReplaceAll(c.name, "=", "-"), r.st.esURL, prefix)
		if err != nil {
			return err
		}
		defer p.stop()
		procs[i] = p
	}
	for k := range r.rep.Settings { // the tune phase's settings are per row, not the run's
		delete(r.rep.Settings, k)
	}
	for _, kv := range saved {
		k, v, _ := strings.Cut(kv, "=")
		r.rep.Settings[k] = v
	}
	workloads := []struct {
		name string
		cfg  loadgen.Config
	}{
		{"S1-shaped: 16 clients × 100 events of 1 KB, events/s", loadgen.Config{Concurrency: 16, EventsPerRequest: 100, EventSize: 1024}},
		{"S2-shaped: 200 clients × 1 event of 1 KB, events/s", loadgen.Config{Concurrency: 200, EventsPerRequest: 1, EventSize: 1024}},
		{"S3-shaped: 2,000/s × 1 event of 5 KB, p99 ms", loadgen.Config{Rate: 2000, Concurrency: 2000, EventsPerRequest: 1, EventSize: 5120}},
	}
	// Warm-up, not recorded: the node and every process get load before the first comparison.
	for i := range tuneConfigs {
		if _, err := r.lg(ctx, "warmup-tune-"+tuneConfigs[i].name, loadgen.Config{IngestURL: "http://" + procs[i].addr,
			Duration: r.plan.WarmDur / 2, Concurrency: 50, EventsPerRequest: 10, EventSize: 1024}); err != nil {
			return err
		}
	}
	got := make([][][]float64, len(tuneConfigs)) // config, workload, round
	for i := range got {
		got[i] = make([][]float64, len(workloads))
	}
	for round := 0; round < r.plan.Rounds; round++ {
		for w, wl := range workloads {
			for k := range tuneConfigs {
				i := (k + round) % len(tuneConfigs) // rotate the order every round
				cfg := wl.cfg
				cfg.IngestURL, cfg.Duration = "http://"+procs[i].addr, r.plan.TuneDur
				res, err := r.lg(ctx, fmt.Sprintf("tune-%s-%d-round-%d", tuneConfigs[i].name, w+1, round+1), cfg)
				if err != nil {
					return err
				}
				v := res.EventsPerSecond
				if cfg.Rate > 0 {
					v = res.Latency.P99
					if failed(res) > 0 {
						v = math.Inf(1) // shown as "—": a run with failures has no p99 worth comparing
					}
				}
				got[i][w] = append(got[i][w], v)
				time.Sleep(time.Second)
			}
		}
	}
	t := &bench.Tuning{Rounds: r.plan.Rounds, Seconds: r.plan.TuneDur.Seconds()}
	for _, wl := range workloads {
		t.Workloads = append(t.Workloads, wl.name)
	}
	for i, c := range tuneConfigs {
		row := bench.TuneRow{Config: c.name}
		for w := range workloads {
			row.Medians = append(row.Medians, median(got[i][w]))
			row.Rounds = append(row.Rounds, got[i][w])
		}
		t.Rows = append(t.Rows, row)
	}
	r.rep.Tuning = t
	return nil
}
