package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSpliceReplacesOnlyTheGeneratedSection(t *testing.T) {
	doc := []byte("# Benchmarks\n\nhand-written intro\n\n" + BeginMarker + "\nold table\n" + EndMarker + "\n\n## Tuning\nkept\n")
	out := string(Splice(doc, "new table\n"))
	if !strings.Contains(out, "hand-written intro") || !strings.Contains(out, "## Tuning\nkept") {
		t.Fatalf("hand-written parts lost:\n%s", out)
	}
	if strings.Contains(out, "old table") || !strings.Contains(out, BeginMarker+"\nnew table\n"+EndMarker) {
		t.Fatalf("section not replaced:\n%s", out)
	}
	// Splicing again is stable.
	if again := string(Splice([]byte(out), "new table\n")); again != out {
		t.Fatalf("not idempotent:\n%s", again)
	}
	// No markers: appended with them.
	out = string(Splice([]byte("# B\n"), "t"))
	if out != "# B\n\n"+BeginMarker+"\nt\n"+EndMarker+"\n" {
		t.Fatalf("%q", out)
	}
}

func TestMarkdownTable(t *testing.T) {
	r := &Report{Date: "2026-01-01", Command: "scripts/bench.sh --quick", Quick: true, Scale: "durations ÷ 4", Elapsed: 200,
		Machine: Machine{Cores: 2, MemoryGiB: 23.4, LoadBefore: "1.0 1.1 1.2", Elasticsearch: "8.19.21", PostgreSQL: "15.18", Go: "go1.26"},
		RawES:   []RawBulkResult{{BulkSize: 1000, Concurrency: 4, DocsPerSecond: 31234.4}},
		Scenarios: []Scenario{
			{ID: "S1", Name: "batched", Target: "≥ 0.8 × raw", Measured: "25,000 events/s", Baseline: "raw 31,234", Ratio: Ptr(0.8004), Met: Ptr(true)},
			{ID: "S7", Name: "overload", Target: "lost = 0", Measured: "x | y"},
		},
		Sweep: []SweepPoint{{System: "naive", Offered: 2000, Achieved: 1500, P99: 5000, Saturated: true}, {System: "spillway", Offered: 2000, Achieved: 2000, P99: 40},
			{System: "naive-20", Offered: 2000, Achieved: 1900, P99: 900, PGConns: 20}},
	}
	r.RawESBest = &r.RawES[0]
	md := r.Markdown([]string{"docs/benchmarks/latency-vs-rate.png"})
	for _, want := range []string{
		"QUICK RUN", "| S1 | batched | 25,000 events/s | raw 31,234 | 0.80× | ≥ 0.8 × raw | yes |",
		"| S7 | overload | x \\| y | — | — | lost = 0 | not measured |", "31,234 (best)",
		"| spillway | 2,000 | 2,000 |", "| naive | 2,000 | 1,500 |", "| naive-20 | 2,000 | 1,900 |", "| 20 |", "**yes**",
		"![latency-vs-rate](docs/benchmarks/latency-vs-rate.png)", "2 cores, 23.4 GiB",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("missing %q in:\n%s", want, md)
		}
	}
	if strings.Index(md, "| spillway |") > strings.Index(md, "| naive-20 |") || strings.Index(md, "| naive-20 |") > strings.Index(md, "| naive |") {
		t.Error("spillway rows should come first, then the users' plan, then the users' pool")
	}
}

func TestSaturated(t *testing.T) {
	for _, tc := range []struct {
		offered, achieved float64
		req, errs         int64
		p99               float64
		want              bool
	}{
		{2000, 1999, 1000, 0, 20, false},
		{2000, 1800, 1000, 0, 20, true},  // fell behind
		{2000, 2000, 1000, 20, 20, true}, // 2 % failed
		{2000, 2000, 1000, 0, 1500, true},
	} {
		if got := Saturated(tc.offered, tc.achieved, tc.req, tc.errs, tc.p99); got != tc.want {
			t.Errorf("%+v: %v", tc, got)
		}
	}
}

func TestPlotsWritePNGs(t *testing.T) {
	dir := t.TempDir()
	names, err := Plots(dir, []SweepPoint{
		{System: "spillway", Offered: 500, Achieved: 500, P50: 3, P99: 12, P999: 30},
		{System: "spillway", Offered: 2000, Achieved: 2000, P50: 4, P99: 20, P999: 60},
		{System: "naive", Offered: 500, Achieved: 500, P50: 8, P99: 30, P999: 90},
		{System: "naive", Offered: 2000, Achieved: 900, P50: 4000, P99: 9000, P999: 10000},
		{System: "naive-20", Offered: 500, Achieved: 500, P50: 9, P99: 35, P999: 95},
		{System: "naive-20", Offered: 2000, Achieved: 1200, P50: 3000, P99: 7000, P999: 9000},
		{System: "unstyled", Offered: 500, Achieved: 500, P50: 9, P99: 35, P999: 95},
	}, "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil || len(b) < 1000 || string(b[1:4]) != "PNG" {
			t.Fatalf("%s: %d bytes, %v", n, len(b), err)
		}
	}
	if _, err := Plots(dir, nil, "empty"); err == nil {
		t.Fatal("no points should be an error")
	}
}

func TestSaturatesAtIgnoresATransient(t *testing.T) {
	sweep := []SweepPoint{
		{System: "naive", Offered: 1000, Saturated: true}, // a transient: 1,500 was fine
		{System: "naive", Offered: 1500},
		{System: "naive", Offered: 3000, Saturated: true},
		{System: "naive", Offered: 2000, Saturated: true},
		{System: "spillway", Offered: 3000},
	}
	if got := SaturatesAt(sweep, "naive"); got != 2000 {
		t.Fatalf("naive saturates at %v, want 2000", got)
	}
	if got := SaturatesAt(sweep, "spillway"); got != 0 {
		t.Fatalf("spillway kept up: %v", got)
	}
}

func TestMarkdownSaysHowRatiosReadAndWhatTheSweepCounts(t *testing.T) {
	r := &Report{Scenarios: []Scenario{{ID: "S8a", Ratio: Ptr(2.5)}}, Sweep: []SweepPoint{{System: "naive", Offered: 1000, PGConns: 42}}}
	md := r.Markdown(nil)
	for _, want := range []string{"higher is better for Spillway", "the baseline's p99 ÷ Spillway's (S8; S9: delivery p99)", "| 2.50× |",
		"pooled PostgreSQL connections open (max) |", "| 42 |"} {
		if !strings.Contains(md, want) {
			t.Errorf("missing %q in:\n%s", want, md)
		}
	}
}

// Stored runs of both report versions read alike: version 0 wrote S8's ratio the other way round
// and S3's as a load; the history turns S8's around and takes the other figures from the raw results.
func TestHistoryOfStoredRuns(t *testing.T) {
	dir := t.TempDir()
	old := &Report{Date: "2026-11-27 19:07 UTC", Machine: Machine{LoadBefore: "6.57 5 4", LoadAfter: "4.57 4 4"},
		RawESBest: &RawBulkResult{DocsPerSecond: 61803.4},
		Scenarios: []Scenario{{ID: "S1", Ratio: Ptr(0.54)}, {ID: "S3", Ratio: Ptr(0.07)}, {ID: "S6", Ratio: Ptr(0.561)}, {ID: "S8a", Ratio: Ptr(2.5)}},
		Runs: map[string]any{
			"S3":         map[string]any{"latency_ms": map[string]any{"p99": 414.2}, "events_per_second": 2000.1, "visibility_ms": map[string]any{"p99": 1406.0}, "search_latency_ms": map[string]any{"p99": 213.0}},
			"S6":         map[string]any{"rows_per_second": 30436.2},
			"S7_summary": map[string]any{"max_rss_bytes": 224e6, "lost": 0},
		}}
	cur := &Report{Version: ReportVersion, Date: "2026-11-27 20:13 UTC", Scenarios: []Scenario{{ID: "S8a", Ratio: Ptr(3.82)},
		{ID: "S8c", Ratio: Ptr(1.25)}, {ID: "S8d", Ratio: Ptr(0.5)}, {ID: "S8f", Ratio: Ptr(0.93)}}, Runs: map[string]any{
		"S9": map[string]any{"streams": 1000,
			"spillway": map[string]any{"delivery_ms": map[string]any{"p50": 120.0, "p99": 212.4}, "search_cores": 0.051, "exactly_once": true},
			"baseline": map[string]any{"delivery_ms": map[string]any{"p50": 300.0, "p99": 539.0}, "search_cores": 0.049, "exactly_once": true}},
	}}
	for _, r := range []*Report{cur, old} {
		if err := r.WriteJSON(filepath.Join(dir, RunFile(r))); err != nil {
			t.Fatal(err)
		}
	}
	if RunFile(old) != "20261127T1907Z.json" {
		t.Fatalf("file name %q", RunFile(old))
	}
	runs, err := LoadRuns(dir)
	if err != nil || len(runs) != 2 || runs[0].Date != old.Date {
		t.Fatalf("%d runs, %v", len(runs), err)
	}
	md := History(runs)
	for _, want := range []string{
		"| 2026-11-27 19:07 UTC | 6.57 → 4.57 | 61,803 | 0.54× | — | 414 / 2,000 | 1406 | 213 | 30,436 (0.56×) | 224, 0 | 0.40× | — | — | — |",
		"| 2026-11-27 20:13 UTC | ? → ? | — | — | — | — | — | — | — | — | 3.82× | — | 1.25× / 0.50× / — / 0.93× | 212, 0.05 (539, 0.05) |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("missing %q in:\n%s", want, md)
		}
	}
	if strings.Index(md, "20:13") > strings.Index(md, "19:07") {
		t.Error("the newest run should come first")
	}
	if runs, err := LoadRuns(filepath.Join(dir, "none")); err != nil || len(runs) != 0 {
		t.Fatalf("a missing directory: %d runs, %v", len(runs), err)
	}
}

func TestSpliceSectionsAreIndependent(t *testing.T) {
	doc := []byte("# B\n\nintro\n")
	doc = Splice(doc, "results 1")
	doc = SpliceSection(doc, "runs", "runs 1")
	doc = SpliceSection(doc, "tuning", (&Tuning{Rounds: 3, Seconds: 10, Workloads: []string{"S1-shaped"},
		Rows: []TuneRow{{Config: "defaults", Medians: []float64{15104}, Rounds: [][]float64{{4503, 20776, 15104}}}}}).Markdown())
	doc = Splice(doc, "results 2")
	doc = SpliceSection(doc, "runs", "runs 2")
	out := string(doc)
	for _, want := range []string{"intro", "results 2", "runs 2", "| defaults | 15,104 (4,503, 20,776, 15,104) |", "3 rounds of 10 s"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	for _, gone := range []string{"results 1", "runs 1"} {
		if strings.Contains(out, gone) {
			t.Errorf("%q was not replaced:\n%s", gone, out)
		}
	}
}
