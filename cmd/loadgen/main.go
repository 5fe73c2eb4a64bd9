// Command loadgen is the benchmark tooling. Its default command drives the ingest (and search)
// API with a configurable load and prints what clients saw: events/s, latency percentiles,
// statuses, visibility and search latency. The other commands are the baselines and the
// network-latency proxy measured beside Spillway in one run.
//
//	loadgen run --ingest http://127.0.0.1:8080 --duration 30s --rate 2000 --event-size 5120   # open loop
//	loadgen run --ingest http://127.0.0.1:8080 --duration 30s --concurrency 200               # closed loop
//	loadgen raw-es --es http://127.0.0.1:9200 --prefix bench --bulk-size 1000 --concurrency 4
//	loadgen naive-server --listen 127.0.0.1:8090 --pg postgres://... --pool 10
//	loadgen proxy --listen 127.0.0.1:15432 --target 127.0.0.1:5432 --rtt 5ms
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/spillway/spillway/internal/loadgen"
)

func main() {
	args := os.Args[1:]
	cmd := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "run":
		err = run(args)
	case "raw-es":
		err = rawES(args)
	case "naive-server":
		err = naiveServer(args)
	case "proxy":
		err = proxy(args)
	default:
		err = fmt.Errorf("unknown command %q (run, raw-es, naive-server, proxy)", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := pflag.NewFlagSet("loadgen", pflag.ContinueOnError)
	var cfg loadgen.Config
	fs.StringVar(&cfg.IngestURL, "ingest", "http://127.0.0.1:8080", "ingest base URL")
	fs.StringVar(&cfg.SearchURL, "search", "", "search base URL (visibility and search workload)")
	fs.StringVar(&cfg.Path, "path", "/api/v1/events", "ingest path")
	fs.StringVar(&cfg.Query, "query", "", `ingest query string, e.g. "wait=searchable" or "ack=async"`)
	fs.StringVar(&cfg.APIKey, "api-key", os.Getenv("SPILLWAY_API_KEY"), "API key (default $SPILLWAY_API_KEY)")
	fs.DurationVar(&cfg.Duration, "duration", 30*time.Second, "length of the run")
	fs.Float64Var(&cfg.Rate, "rate", 0, "requests per second, open loop (0: closed loop with --concurrency clients)")
	fs.IntVar(&cfg.Concurrency, "concurrency", 50, "closed-loop clients, or the cap on requests in flight in open loop")
	fs.IntVar(&cfg.EventsPerRequest, "events-per-request", 1, "events per request")
	fs.IntVar(&cfg.EventSize, "event-size", 1024, "approximate bytes per event")
	fs.IntVar(&cfg.Clients, "clients", 100, "distinct clientIds")
	fs.StringVar(&cfg.ClientPrefix, "client-prefix", "client-", "clientId prefix")
	fs.IntVar(&cfg.VisibilityEvery, "visibility-every", 0, "probe search for one in N acknowledged events (0: off)")
	fs.Float64Var(&cfg.SearchRate, "search-rate", 0, "search requests per second beside the load (0: off)")
	fs.DurationVar(&cfg.Timeout, "timeout", 30*time.Second, "per-request timeout")
	ackedFile := fs.String("acked-ids", "", "write every acknowledged event id to this file")
	jsonOut := fs.Bool("json", false, "print the result as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *ackedFile != "" {
		f, err := os.Create(*ackedFile)
		if err != nil {
			return err
		}
		defer f.Close()
		cfg.AckedIDs = f
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := loadgen.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if *jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	printHuman(res)
	return nil
}

func printHuman(r *loadgen.Result) {
	fmt.Printf("mode %s", r.Mode)
	if r.OfferedRate > 0 {
		fmt.Printf(" at %.0f req/s", r.OfferedRate)
	}
	fmt.Printf(", %d events/request of ~%d B, concurrency %d, %.1fs\n", r.EventsPerRequest, r.EventSize, r.Concurrency, r.Elapsed)
	fmt.Printf("requests %d, events acknowledged %d, %.0f events/s\n", r.Requests, r.Events, r.EventsPerSecond)
	printStatus("status", r.Status)
	printP("latency", r.Latency)
	if r.Unsent > 0 {
		fmt.Printf("unsent (offered but never sent before the end): %d\n", r.Unsent)
	}
	if r.Visibility != nil {
		printP("visibility (201 → searchable)", *r.Visibility)
		if r.VisibilityLost > 0 {
			fmt.Printf("visibility: %d probes never found the event within 30 s\n", r.VisibilityLost)
		}
	}
	if r.Search != nil {
		printP("search latency", *r.Search)
		printStatus("search status", r.SearchStatus)
	}
}

func printP(name string, p loadgen.Percentiles) {
	fmt.Printf("%s ms: p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  (n=%d)\n", name, p.P50, p.P90, p.P99, p.P999, p.Max, p.N)
}

func printStatus(name string, m map[string]int) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Printf("%s:", name)
	for _, k := range keys {
		fmt.Printf(" %s×%d", k, m[k])
	}
	fmt.Println()
}
