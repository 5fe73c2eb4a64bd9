package main

import (
	"context"
	"time"

	"github.com/spf13/pflag"

	"github.com/spillway/spillway/pkg/app"
	"github.com/spillway/spillway/pkg/archive"
	"github.com/spillway/spillway/pkg/httpx"
)

// runCmd is `archiver run`: the continuous archiver behind /metrics, /healthz and /readyz.
type runCmd struct{}

func (*runCmd) flags(*pflag.FlagSet) {}

func (*runCmd) run(ctx context.Context, e cmdEnv) error {
	cfg, logger := e.cfg, e.logger
	if cfg.Postgres.MaxConns < 2 {
		return &app.UsageError{Msg: "postgres.max_conns: archiver run needs at least 2 (one connection holds the lease and writes the batches, the rest serve verification and health checks)"}
	}
	logger.Info("starting", "config", cfg)
	// The schema is applied by Run itself (retrying while PostgreSQL is down), so the stores are
	// opened here without a schema step.
	es, pg, err := connect(ctx, e, "spillway-archiver")
	if err != nil {
		return err
	}
	defer pg.Close()
	reg := httpx.NewRegistry()
	// retention_after was validated with the configuration (config.RetentionAllowed).
	a := archive.New(es, archive.Postgres(pg), archive.Options{Config: cfg.Archiver, Logger: logger.With("component", "archiver"),
		Metrics: archive.NewMetrics(reg, pg), Indices: es, Boundary: pg, RetentionGrace: cfg.RetentionGrace(),
		PartitionsAhead: cfg.Ingest.MaxFutureSkew})
	health := httpx.NewHealth(2 * time.Second)
	health.AddCheck("elasticsearch", es.Ping)
	health.AddCheck("postgres", pg.Ping)
	health.AddCheck("schema", pg.CheckSchema)

	// The archiver outlives the signal: on shutdown, Drain asks it to finish its batch.
	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Run returns early only on an error retrying cannot fix (another prefix owns the schema):
	// then the service stops too, and the process exits with that error.
	serveCtx, stopServing := context.WithCancel(ctx)
	defer stopServing()
	done := make(chan error, 1)
	go func() {
		err := a.Run(runCtx)
		if err != nil {
			stopServing()
		}
		done <- err
	}()
	err = app.Serve(serveCtx, app.Service{
		Name: "archiver", Logger: logger, HTTP: cfg.HTTP, Router: httpx.NewRouter(),
		Registry: reg, Health: health, Drain: a.Stop,
	})
	cancel()
	if rerr := <-done; err == nil {
		err = rerr
	}
	return err
}
