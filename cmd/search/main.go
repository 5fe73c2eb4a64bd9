// Command search answers clientId and time queries, and a live stream, from Elasticsearch.
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

func main() { os.Exit(app.Main(config.RoleSearch, nil, os.Args[1:], run)) }

func run(ctx context.Context, cfg *config.Config, _ []string, logger *slog.Logger) error {
	logger.Info("starting", "config", cfg)
	es, err := esstore.New(cfg.Elasticsearch, logger.With("component", "esstore"))
	if err != nil {
		return err
	}
	health := httpx.NewHealth(2 * time.Second)
	health.AddCheck("elasticsearch", es.Ping)

	router := httpx.NewRouter()
	return app.Serve(ctx, app.Service{
		Name: "search", Logger: logger, HTTP: cfg.HTTP, Router: router,
		Registry: httpx.NewRegistry(), Health: health,
	})
}
