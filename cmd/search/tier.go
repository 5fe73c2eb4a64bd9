package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/pgstore"
	"github.com/spillway/spillway/pkg/search"
	"github.com/spillway/spillway/pkg/tier"
)

// readStore is what the read API queries: Elasticsearch alone, or — with search.cold_tier — the
// tier store over Elasticsearch and PostgreSQL (docs/tiers.md). For the latter it
// opens search's own pool (read-only, capped at search.postgres_max_conns, statement timeout
// search.postgres_statement_timeout; connecting lazily, so a database that is down stops neither
// the start nor the Elasticsearch part) and starts the boundary refresher. drain stops both; it
// is nil when there is nothing to stop.
func readStore(cfg *config.Config, es *esstore.Store, reg prometheus.Registerer, logger *slog.Logger) (search.Store, func(context.Context) error, error) {
	if !cfg.Search.ColdTier {
		return es, nil, nil
	}
	pgCfg := cfg.Postgres
	pgCfg.StatementTimeout = cfg.Search.PostgresQueryLimit
	pg, err := pgstore.Open(context.Background(), pgCfg, pgstore.Options{MaxConns: cfg.Search.PostgresMaxConns, ReadOnly: true,
		ApplicationName: "spillway-search"}, logger.With("component", "pgstore"))
	if err != nil {
		return nil, nil, err
	}
	store := tier.New(es, pg, tier.Options{
		Prefix: cfg.Elasticsearch.IndexPrefix, Refresh: cfg.Search.ColdBoundaryRefresh, MaxAge: cfg.Search.BoundaryMaxAge(),
		HotHorizon: cfg.Ingest.MaxPastAge + 24*time.Hour, Logger: logger.With("component", "tier"), Registerer: reg,
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); store.Run(ctx) }()
	var once sync.Once
	drain := func(context.Context) error {
		once.Do(func() { cancel(); wg.Wait(); pg.Close() })
		return nil
	}
	return store, drain, nil
}
