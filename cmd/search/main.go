// Command search answers clientId and time queries, and a live stream, from Elasticsearch — and,
// with search.cold_tier, the history below the cold boundary from PostgreSQL.
package main

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/spillway/spillway/pkg/app"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/httpx"
	"github.com/spillway/spillway/pkg/search"
)

func main() { os.Exit(app.Main(config.RoleSearch, nil, os.Args[1:], run)) }

func run(ctx context.Context, cfg *config.Config, _ []string, logger *slog.Logger) error {
	logger.Info("starting", "config", cfg)
	service, svc, err := build(cfg, logger)
	if err != nil {
		return err
	}

	// The stream poller stops with ctx (SIGTERM), which ends the open streams, so the graceful
	// shutdown does not wait the whole grace period for readers that never hang up.
	pollCtx, stopPoll := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); svc.Run(pollCtx) }()

	err = app.Serve(ctx, *service)
	stopPoll() // also when Serve failed before ctx ended
	wg.Wait()
	return err
}

// build wires the search service; tests use it to see the routes as served.
func build(cfg *config.Config, logger *slog.Logger) (*app.Service, *search.Service, error) {
	es, err := esstore.New(cfg.Elasticsearch, logger.With("component", "esstore"))
	if err != nil {
		return nil, nil, err
	}
	health := httpx.NewHealth(2 * time.Second)
	health.AddCheck("elasticsearch", es.Ping)

	reg := httpx.NewRegistry()
	store, drain, err := readStore(cfg, es, reg, logger)
	if err != nil {
		return nil, nil, err
	}
	svc := search.New(store, es, cfg.Search, logger.With("component", "search"), reg)
	router := httpx.NewRouter()
	svc.Mount(router)
	return &app.Service{
		Name: "search", Logger: logger, HTTP: cfg.HTTP, Router: router,
		Registry: reg, Health: health, OpenAPI: true, Drain: drain,
	}, svc, nil
}
