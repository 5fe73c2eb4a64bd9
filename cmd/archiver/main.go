// Command archiver copies indexed events from Elasticsearch into PostgreSQL, exactly once,
// in COPY batches over a small fixed pool.
package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/spillway/spillway/pkg/app"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/httpx"
	"github.com/spillway/spillway/pkg/pgstore"
)

func main() { os.Exit(app.Main(config.RoleArchiver, nil, os.Args[1:], run)) }

func run(ctx context.Context, cfg *config.Config, _ []string, logger *slog.Logger) error {
	logger.Info("starting", "config", cfg)
	es, err := esstore.New(cfg.Elasticsearch, logger.With("component", "esstore"))
	if err != nil {
		return err
	}
	pg, err := pgstore.Open(ctx, cfg.Postgres, pgstore.Options{ApplicationName: "spillway-archiver"}, logger.With("component", "pgstore"))
	if err != nil {
		return err
	}
	defer pg.Close()
	health := httpx.NewHealth(2 * time.Second)
	health.AddCheck("elasticsearch", es.Ping)
	health.AddCheck("postgres", pg.Ping)
	health.AddCheck("schema", pg.CheckSchema)
	go func() { _ = app.Retry(ctx, logger, "apply schema", 30*time.Second, pg.Migrate) }()

	router := httpx.NewRouter()
	return app.Serve(ctx, app.Service{
		Name: "archiver", Logger: logger, HTTP: cfg.HTTP, Router: router,
		Registry: httpx.NewRegistry(), Health: health,
	})
}
