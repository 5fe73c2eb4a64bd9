package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/spillway/spillway/internal/bench"
	"github.com/spillway/spillway/internal/netproxy"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/esstore"
)

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
}

// rawES measures the ceiling: ingest-shaped documents straight to _bulk.
func rawES(args []string) error {
	fs := pflag.NewFlagSet("raw-es", pflag.ContinueOnError)
	var cfg bench.RawBulkConfig
	fs.StringVar(&cfg.ESURL, "es", "http://127.0.0.1:9200", "Elasticsearch URL")
	fs.StringVar(&cfg.IndexPrefix, "prefix", "bench", "index prefix (the events template is installed for it)")
	fs.DurationVar(&cfg.Duration, "duration", 30*time.Second, "length of the run")
	fs.IntVar(&cfg.BulkSize, "bulk-size", 1000, "documents per _bulk request")
	fs.IntVar(&cfg.Concurrency, "concurrency", 4, "concurrent _bulk requests")
	fs.IntVar(&cfg.EventSize, "event-size", 1024, "approximate bytes per document")
	fs.IntVar(&cfg.Clients, "clients", 100, "distinct clientIds")
	ingestRefresh, _ := time.ParseDuration(config.Default(config.RoleIngest, "elasticsearch.refresh_interval"))
	refresh := fs.Duration("refresh-interval", ingestRefresh, "refresh interval of the template (default: ingest's)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	esCfg := config.Elasticsearch{URLs: []string{cfg.ESURL}, IndexPrefix: cfg.IndexPrefix, RefreshInterval: *refresh,
		Shards: 1, Replicas: "0-1", RequestTimeout: 30 * time.Second, MaxRetries: 3}
	s, err := esstore.New(esCfg, nil)
	if err != nil {
		return err
	}
	if err := s.InstallTemplate(ctx); err != nil {
		return err
	}
	res, err := bench.RawBulk(ctx, cfg)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// naiveServer runs the users' current design: one INSERT per event through a pool, into a
// plain table of its own (bench.NaiveTable), not Spillway's archive.
func naiveServer(args []string) error {
	fs := pflag.NewFlagSet("naive-server", pflag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8090", "listen address")
	pgURL := fs.String("pg", "postgres://spillway:spillway@127.0.0.1:5432/spillway?sslmode=disable", "PostgreSQL URL")
	schema := fs.String("schema", "naive", "schema for the naive_events table (created if missing)")
	pool := fs.Int32("pool", 10, "connection pool size")
	app := fs.String("application-name", "spillway-naive", "application_name of its connections (pg_stat_activity)")
	timeout := fs.Duration("timeout", 10*time.Second, "per-insert timeout (waiting for a pooled connection included)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	// The users' design is a plain pool of its own, not Spillway's archive store.
	db, err := bench.OpenDB(ctx, *pgURL, *schema, *app, *pool)
	if err != nil {
		return err
	}
	defer db.Close()
	table, err := bench.OpenNaiveTable(ctx, func(ctx context.Context, sql string, args ...any) (int64, error) {
		tag, err := db.Exec(ctx, sql, args...)
		return tag.RowsAffected(), err
	}, *schema)
	if err != nil {
		return err
	}
	srv := &http.Server{Addr: *listen, Handler: bench.NaiveHandler(table, *timeout), ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); _ = srv.Shutdown(context.Background()) }()
	logger.Info("naive server listening", "addr", *listen, "pool", *pool, "schema", *schema)
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		return err
	}
	return nil
}

// proxy adds network latency in front of a store.
func proxy(args []string) error {
	fs := pflag.NewFlagSet("proxy", pflag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "listen address")
	target := fs.String("target", "", "address to forward to")
	rtt := fs.Duration("rtt", 5*time.Millisecond, "added round-trip time (half each way)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *target == "" {
		return fmt.Errorf("--target is required")
	}
	p, err := netproxy.Start(*listen, *target, *rtt/2)
	if err != nil {
		return err
	}
	fmt.Printf("proxy %s -> %s adding %s round trip\n", p.Addr(), *target, *rtt)
	ctx, stop := signalContext()
	defer stop()
	<-ctx.Done()
	return p.Close()
}
