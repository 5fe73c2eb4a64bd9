// Command ingest accepts events over HTTP and bulk-indexes them into Elasticsearch, answering
// each request only once Elasticsearch has its events durably.
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
)

func main() { os.Exit(app.Main(config.RoleIngest, nil, os.Args[1:], run)) }

func run(ctx context.Context, cfg *config.Config, _ []string, logger *slog.Logger) error {
	logger.Info("starting", "config", cfg)
	es, err := esstore.New(cfg.Elasticsearch, logger.With("component", "esstore"))
	if err != nil {
		return err
	}
	health := httpx.NewHealth(2 * time.Second)
	health.AddCheck("elasticsearch", es.Ping)
	health.AddCheck("template", es.CheckTemplate)
	// The template is installed in the background so that ingest starts (and reports not ready)
	// while Elasticsearch is still coming up.
	go func() {
		_ = app.Retry(ctx, logger, "install index template", 30*time.Second, es.InstallTemplate)
	}()

	router := httpx.NewRouter()
	return app.Serve(ctx, app.Service{
		Name: "ingest", Logger: logger, HTTP: cfg.HTTP, Router: router,
		Registry: httpx.NewRegistry(), Health: health,
	})
}
