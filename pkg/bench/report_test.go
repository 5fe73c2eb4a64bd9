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
		Sweep: []SweepPoint{{System: "naive", Offered: 2000, Achieved: 1500, P99: 5000, Saturated: true}, {System: "spillway", Offered: 2000, Achieved: 2000, P99: 40}},
	}
	r.RawESBest = &r.RawES[0]
	md := r.Markdown([]string{"docs/benchmarks/latency-vs-rate.png"})
	for _, want := range []string{
		"QUICK RUN", "| S1 | batched | 25,000 events/s | raw 31,234 | 0.80× | ≥ 0.8 × raw | yes |",
		"| S7 | overload | x \\| y | — | — | lost = 0 | not measured |", "31,234 (best)",
		"| spillway | 2,000 | 2,000 |", "| naive | 2,000 | 1,500 |", "**yes**",
		"![latency-vs-rate](docs/benchmarks/latency-vs-rate.png)", "2 cores, 23.4 GiB",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("missing %q in:\n%s", want, md)
		}
	}
	if strings.Index(md, "| spillway |") > strings.Index(md, "| naive |") {
		t.Error("spillway rows should come first")
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
