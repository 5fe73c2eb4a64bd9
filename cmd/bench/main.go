// Command bench runs Spillway's benchmark (issue 6): the scenarios S1–S9 and their raw
// baselines — Elasticsearch _bulk, PostgreSQL COPY and the naive one-INSERT-per-event design —
// in one invocation, against a private Elasticsearch node and PostgreSQL cluster, so that every
// Spillway figure can be given as a ratio to a baseline measured minutes apart on the same
// machine. scripts/bench.sh builds the binaries and calls it:
//
//	bench --repo . --bin DIR --out DIR [--quick] [--update-doc] [--only PHASE,...] [--ingest-set key=value ...] [--search-set key=value ...]
//
// It writes results.json, results.md and the plots into --out. With --update-doc, a full run
// (no --only) splices its results into BENCHMARKS.md, copies the plots and results.json to
// docs/benchmarks/, stores results.json under docs/benchmarks/runs/ and regenerates the table of
// stored runs; a tune run (--only tune) stores docs/benchmarks/tuning.json and regenerates the
// tuning table; other partial runs leave the documents alone. --render-docs regenerates the
// stored-run and tuning tables from docs/benchmarks/ without running anything.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/spillway/spillway/internal/bench"
)

// plan is what one run does; --quick scales it down.
type plan struct {
	Quick        bool
	RawDur       time.Duration
	RawSweep     [][2]int // bulk size, concurrent requests
	S1Dur, S2Dur time.Duration
	Preload      int64         // events indexed before S3/S5 (S5 wants ≥ 5 M)
	PreloadMax   time.Duration // bound on loading them
	S3Dur        time.Duration
	S6Rows       int   // the archiver's backlog (S6 wants ≥ 1 M)
	S6GrowRows   int64 // S6g: rows already in the grown archive (wants ≥ 10 M)
	S6GrowDays   int   // S6g: days they span (wants ≥ 30)
	S7Before     time.Duration
	S7Down       time.Duration
	S7After      time.Duration
	SweepRates   []float64
	SweepDur     time.Duration
	NaivePool    int
	S1Conc       int
	WarmDur      time.Duration // unrecorded warm-up before the raw sweep, S1 and the sweep
	Rounds       int           // raw, S1, S2 interleaved this many times
	TuneDur      time.Duration // one run of the tune phase
	MergeWait    time.Duration // bound on waiting for the merges of S5's load before S3
	S9Streams    int           // live streams open in S9 (the target is for 1,000)
	S9Dur        time.Duration // S9's load per round and configuration
}

func fullPlan() plan {
	return plan{
		RawDur:   15 * time.Second,
		RawSweep: [][2]int{{500, 4}, {1000, 2}, {1000, 4}, {1000, 8}, {5000, 4}, {5000, 8}},
		S1Dur:    20 * time.Second, S2Dur: 20 * time.Second, Rounds: 3,
		Preload: 5_000_000, PreloadMax: 25 * time.Minute, S3Dur: 60 * time.Second,
		S6Rows: 1_000_000, S6GrowRows: 10_000_000, S6GrowDays: 30,
		S7Before: 20 * time.Second, S7Down: 30 * time.Second, S7After: 20 * time.Second,
		SweepRates: []float64{250, 500, 1000, 1500, 2000, 3000, 4000},
		SweepDur:   20 * time.Second,
		NaivePool:  500,
		S1Conc:     16,
		WarmDur:    10 * time.Second,
		TuneDur:    10 * time.Second,
		MergeWait:  5 * time.Minute,
		S9Streams:  1000,
		S9Dur:      30 * time.Second,
	}
}

func quickPlan() plan {
	return plan{
		Quick:    true,
		RawDur:   4 * time.Second,
		RawSweep: [][2]int{{1000, 4}, {5000, 4}},
		S1Dur:    5 * time.Second, S2Dur: 5 * time.Second, Rounds: 2,
		Preload: 150_000, PreloadMax: time.Minute, S3Dur: 10 * time.Second,
		S6Rows: 60_000, S6GrowRows: 300_000, S6GrowDays: 30,
		S7Before: 4 * time.Second, S7Down: 8 * time.Second, S7After: 4 * time.Second,
		SweepRates: []float64{500, 1000, 2000},
		SweepDur:   4 * time.Second,
		NaivePool:  500,
		S1Conc:     16,
		WarmDur:    4 * time.Second,
		TuneDur:    5 * time.Second,
		MergeWait:  30 * time.Second,
		S9Streams:  100,
		S9Dur:      8 * time.Second,
	}
}

func (p plan) scale() string {
	if !p.Quick {
		return ""
	}
	f := fullPlan()
	return fmt.Sprintf("Durations are cut to seconds (S1/S2 %d rounds of %s instead of %d of %s, S3 %s instead of %s, sweep points %s instead of %s, Elasticsearch stopped %s instead of %s); "+
		"S5 runs with %s events indexed instead of ≥ %s, S6 drains %s events instead of ≥ %s, S9 opens %d streams for %s instead of %d for %s; the raw _bulk sweep tries %d configurations instead of %d. "+
		"Figures are indicative only; the targets' sizes are not met by construction.",
		p.Rounds, p.S1Dur, f.Rounds, f.S1Dur, p.S3Dur, f.S3Dur, p.SweepDur, f.SweepDur, p.S7Down, f.S7Down,
		bench.Num(float64(p.Preload)), bench.Num(float64(f.Preload)), bench.Num(float64(p.S6Rows)), bench.Num(float64(f.S6Rows)),
		p.S9Streams, p.S9Dur, f.S9Streams, f.S9Dur, len(p.RawSweep), len(f.RawSweep))
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := pflag.NewFlagSet("bench", pflag.ContinueOnError)
	quick := fs.Bool("quick", false, "scaled-down run (under 5 minutes)")
	repo := fs.String("repo", ".", "repository root (scripts/services.sh, BENCHMARKS.md)")
	bin := fs.String("bin", "bin", "directory of the built ingest, search, archiver and loadgen binaries")
	out := fs.String("out", "", "directory for results.json, results.md, plots, profiles and logs")
	updateDoc := fs.Bool("update-doc", false, "splice the table into BENCHMARKS.md and copy the plots to docs/benchmarks/")
	only := fs.StringSlice("only", nil, "run only these phases: raw, ingest (S1-S5), archive (S6), wan (S8), streams (S9), overload (S7); tune (ingest settings compared) runs only when named")
	ingestSet := fs.StringArray("ingest-set", nil, "extra ingest configuration, key=value (e.g. ingest.bulk_workers=8), for tuning runs")
	archiverSet := fs.StringArray("archiver-set", nil, "extra archiver configuration, key=value (e.g. archiver.batch_size=10000)")
	searchSet := fs.StringArray("search-set", nil, "extra search configuration for S9, key=value (e.g. search.stream_poll=200ms)")
	command := fs.String("command", "", "the command line to record (scripts/bench.sh passes its own)")
	renderDocs := fs.Bool("render-docs", false, "only regenerate BENCHMARKS.md's tables of stored runs and tuning from docs/benchmarks/")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *renderDocs {
		abs, err := filepath.Abs(*repo)
		if err != nil {
			return err
		}
		return renderStored(abs)
	}
	if *out == "" {
		return fmt.Errorf("--out is required")
	}
	for _, d := range []*string{repo, bin, out} {
		abs, err := filepath.Abs(*d)
		if err != nil {
			return err
		}
		*d = abs
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	p := fullPlan()
	if *quick {
		p = quickPlan()
	}
	if *command == "" {
		*command = "bench " + strings.Join(args, " ")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	st, err := newStack(*repo, *bin, *out)
	if err != nil {
		return err
	}
	r := &runner{plan: p, st: st, ingestSet: *ingestSet, archiverSet: *archiverSet, searchSet: *searchSet, phases: map[string]bool{},
		run: fmt.Sprintf("b%x", time.Now().Unix()%0xfffff),
		rep: &bench.Report{Version: bench.ReportVersion, Date: time.Now().UTC().Format("2006-01-02 15:04 MST"), Command: *command, Quick: p.Quick, Scale: p.scale(),
			Settings: map[string]string{}, Runs: map[string]any{}}}
	for _, o := range *only {
		r.phases[o] = true
	}
	start := time.Now()
	if p.Quick {
		logf("QUICK run: scaled down, indicative only — %s", p.scale())
	}
	logf("starting the private stack in %s (Elasticsearch :%d, PostgreSQL :%d)", st.state, st.esPort, st.pgPort)
	defer st.down()
	if err := st.up(ctx); err != nil {
		return err
	}
	r.machine(ctx)
	r.all(ctx)
	r.complete()
	r.rep.Elapsed = time.Since(start).Seconds()
	r.rep.Machine.LoadAfter = loadavg()
	return r.write(*out, *repo, *updateDoc)
}

// write saves results.json, the plots and results.md, and updates BENCHMARKS.md if asked.
func (r *runner) write(out, repo string, updateDoc bool) error {
	if err := r.rep.WriteJSON(filepath.Join(out, "results.json")); err != nil {
		return err
	}
	var plots []string
	if len(r.rep.Sweep) > 0 {
		names, err := bench.Plots(out, r.rep.Sweep, "5 ms round trip to the stores")
		if err != nil {
			r.rep.Errors = append(r.rep.Errors, "plots: "+err.Error())
		}
		plots = names
	}
	md := r.rep.Markdown(plots)
	if err := os.WriteFile(filepath.Join(out, "results.md"), []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Println(md)
	logf("results: %s, %s", filepath.Join(out, "results.json"), filepath.Join(out, "results.md"))
	if !updateDoc {
		return nil
	}
	docDir := filepath.Join(repo, "docs", "benchmarks")
	if err := os.MkdirAll(filepath.Join(docDir, "runs"), 0o755); err != nil {
		return err
	}
	switch {
	case len(r.phases) == 1 && r.phases["tune"] && r.rep.Tuning != nil:
		// Stored, so that the tuning table BENCHMARKS.md quotes comes from a file.
		if err := writeJSON(filepath.Join(docDir, "tuning.json"), tuningFile{Date: r.rep.Date, Command: r.rep.Command,
			Machine: r.rep.Machine, Settings: r.rep.Settings, Tuning: r.rep.Tuning}); err != nil {
			return err
		}
		return renderStored(repo)
	case len(r.phases) > 0:
		logf("a partial run (--only) leaves BENCHMARKS.md and docs/benchmarks/ alone")
		return nil
	}
	var links []string
	for _, p := range plots {
		b, err := os.ReadFile(filepath.Join(out, p))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(docDir, p), b, 0o644); err != nil {
			return err
		}
		links = append(links, "docs/benchmarks/"+p)
	}
	if err := r.rep.WriteJSON(filepath.Join(docDir, "results.json")); err != nil {
		return err
	}
	if err := r.rep.WriteJSON(filepath.Join(docDir, "runs", bench.RunFile(r.rep))); err != nil {
		return err
	}
	docPath := filepath.Join(repo, "BENCHMARKS.md")
	doc, err := os.ReadFile(docPath)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := os.WriteFile(docPath, bench.Splice(doc, r.rep.Markdown(links)), 0o644); err != nil {
		return err
	}
	logf("updated %s and %s", docPath, docDir)
	return renderStored(repo)
}

// tuningFile is docs/benchmarks/tuning.json: the last tune run.
type tuningFile struct {
	Date     string            `json:"date"`
	Command  string            `json:"command"`
	Machine  bench.Machine     `json:"machine"`
	Settings map[string]string `json:"settings"`
	Tuning   *bench.Tuning     `json:"tuning"`
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// renderStored regenerates BENCHMARKS.md's table of the full runs stored in
// docs/benchmarks/runs/ and its tuning table from docs/benchmarks/tuning.json.
func renderStored(repo string) error {
	docDir := filepath.Join(repo, "docs", "benchmarks")
	runs, err := bench.LoadRuns(filepath.Join(docDir, "runs"))
	if err != nil {
		return err
	}
	history := "No full run stored yet: `scripts/bench.sh` stores each one under `docs/benchmarks/runs/`.\n"
	if len(runs) > 0 {
		history = fmt.Sprintf("Every full run stored under `docs/benchmarks/runs/` (%d), newest first; each file is that run's "+
			"`results.json`.\n\n", len(runs)) + bench.History(runs)
	}
	tuning := "No comparison stored yet: `scripts/bench.sh --tune` runs one and stores it in `docs/benchmarks/tuning.json`.\n"
	if b, err := os.ReadFile(filepath.Join(docDir, "tuning.json")); err == nil {
		var t tuningFile
		if err := json.Unmarshal(b, &t); err != nil {
			return fmt.Errorf("tuning.json: %w", err)
		}
		if t.Tuning != nil {
			tuning = fmt.Sprintf("Run of %s, `%s`; load average (1/5/15 min) %s before, %s after; stored in "+
				"`docs/benchmarks/tuning.json`.\n\n", t.Date, t.Command, t.Machine.LoadBefore, t.Machine.LoadAfter) + t.Tuning.Markdown()
		}
	} else if !os.IsNotExist(err) {
		return err
	}
	docPath := filepath.Join(repo, "BENCHMARKS.md")
	doc, err := os.ReadFile(docPath)
	if err != nil {
		return err
	}
	doc = bench.SpliceSection(doc, "runs", history)
	doc = bench.SpliceSection(doc, "tuning", tuning)
	if err := os.WriteFile(docPath, doc, 0o644); err != nil {
		return err
	}
	logf("regenerated the stored runs (%d) and the tuning table in %s", len(runs), docPath)
	return nil
}
