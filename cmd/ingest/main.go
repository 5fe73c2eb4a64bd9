// Command ingest accepts events over HTTP and bulk-indexes them into Elasticsearch, answering
// each request only once Elasticsearch has its events durably.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/spillway/spillway/pkg/app"
	"github.com/spillway/spillway/pkg/auth"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/httpx"
	"github.com/spillway/spillway/pkg/ingest"
	"github.com/spillway/spillway/pkg/ratelimit"
)

func main() { os.Exit(app.Main(config.RoleIngest, nil, os.Args[1:], run)) }

func run(ctx context.Context, cfg *config.Config, _ []string, logger *slog.Logger) error {
	logger.Info("starting", "config", cfg)
	svc, err := wire(ctx, cfg, logger)
	if err != nil {
		return err
	}
	return app.Serve(ctx, *svc)
}

// wire wires the ingest service; tests use it to see the routes as served.
func wire(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*app.Service, error) {
	// Keys first: a service that may not start (no keys on a public address) contacts nothing.
	authn, err := app.Authenticator(cfg.Auth, cfg.HTTP.Addr, logger.With("component", "auth"))
	if err != nil {
		return nil, err
	}
	es, err := esstore.New(cfg.Elasticsearch, logger.With("component", "esstore"))
	if err != nil {
		return nil, err
	}
	// The template is installed in the background so that ingest starts (and reports not ready)
	// while Elasticsearch is still coming up. Events are refused until it is in place: an index
	// created without it would get dynamic mappings.
	var installed atomic.Bool
	health := httpx.NewHealth(2 * time.Second)
	health.AddCheck("elasticsearch", es.Ping)
	health.AddCheck("template", func(ctx context.Context) error {
		// Ready only once this process has installed it, as the handler demands: the template
		// can be visible in Elasticsearch while the installing call is still being retried.
		if !installed.Load() {
			return errors.New("index template not installed by this process yet")
		}
		err := es.CheckTemplate(ctx)
		if !errors.Is(err, esstore.ErrTemplateOutdated) {
			return err
		}
		// Deleted, or replaced by an older ingest: put this binary's version back (a newer
		// template passes the check and is never replaced).
		logger.Warn("index template missing or outdated; installing it again", "err", err)
		if ierr := es.InstallTemplate(ctx); ierr != nil {
			return fmt.Errorf("%w (installing it again: %v)", err, ierr)
		}
		return es.CheckTemplate(ctx)
	})
	go func() {
		if app.Retry(ctx, logger, "install index template", 30*time.Second, es.InstallTemplate) == nil {
			installed.Store(true)
		}
	}()

	reg := httpx.NewRegistry()
	ilog := logger.With("component", "ingest")
	mon := ingest.NewMonitor(reg, cfg.Ingest.RetryAfter, ilog)
	writer, err := es.NewBulkWriter(esstore.BulkConfig{
		MaxConcurrent: cfg.Ingest.BulkWorkers,
		FlushBytes:    int(cfg.Ingest.BulkFlushBytes),
		Linger:        cfg.Ingest.BulkFlushInterval,
		Timeout:       cfg.Ingest.AckTimeout,
		OnFlush:       mon.ObserveFlush,
	})
	if err != nil {
		return nil, err
	}
	rl := cfg.RateLimit
	h := ingest.New(cfg.Ingest, ingest.Options{Writer: writer, Monitor: mon, Logger: ilog,
		Limiter: ratelimit.New(rl.IngestEventsPerSecond, rl.IngestBurst, 0),
		Ready: func() error {
			if !installed.Load() {
				return errors.New("index template not installed yet")
			}
			return nil
		}})
	router := httpx.NewRouter()
	svc := &app.Service{
		Name: "ingest", Logger: logger, HTTP: cfg.HTTP, Router: router,
		Registry: reg, Health: health, Drain: h.Drain, OpenAPI: true, Auth: authn,
	}
	// The API routes live on a subrouter so that only they need a key: /healthz, /readyz and
	// /openapi.yaml stay open, /metrics is guarded by app.Service.Mount.
	apiRoutes := router.NewRoute().Subrouter()
	apiRoutes.Use(auth.Require(authn, auth.RoleIngest, svc.WriteError))
	h.Mount(apiRoutes)
	return svc, nil
}
