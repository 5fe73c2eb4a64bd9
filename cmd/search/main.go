// Command search answers clientId and time queries, and a live stream, from Elasticsearch.
package main

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/spillway/spillway/pkg/app"
	"github.com/spillway/spillway/pkg/auth"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/httpx"
	"github.com/spillway/spillway/pkg/ratelimit"
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
	// Keys first: a service that may not start (no keys on a public address) contacts nothing.
	authn, err := app.Authenticator(cfg.Auth, cfg.HTTP.Addr, logger.With("component", "auth"))
	if err != nil {
		return nil, nil, err
	}
	es, err := esstore.New(cfg.Elasticsearch, logger.With("component", "esstore"))
	if err != nil {
		return nil, nil, err
	}
	health := httpx.NewHealth(2 * time.Second)
	health.AddCheck("elasticsearch", es.Ping)

	reg := httpx.NewRegistry()
	svc := search.New(es, es, cfg.Search, logger.With("component", "search"), reg)
	router := httpx.NewRouter()
	service := &app.Service{
		Name: "search", Logger: logger, HTTP: cfg.HTTP, Router: router,
		Registry: reg, Health: health, OpenAPI: true, Auth: authn,
	}
	// The API routes live on a subrouter so that only they need a key: /healthz, /readyz and
	// /openapi.yaml stay open, /metrics is guarded by app.Service.Mount. Requests are counted
	// against the key, or the client address without keys, after authentication (so unknown
	// keys cannot drain a real key's bucket); the handlers check clientIds.
	rl := cfg.RateLimit
	limiter := ratelimit.New(rl.SearchRequestsPerSecond, rl.SearchBurst, 0)
	apiRoutes := router.NewRoute().Subrouter()
	apiRoutes.Use(auth.Require(authn, auth.RoleRead, service.WriteError),
		ratelimit.Middleware(limiter, "ratelimit.search_requests_per_second", searchBucket, service.WriteError))
	svc.Mount(apiRoutes)
	return service, svc, nil
}

// searchBucket is a search request's rate-limit bucket: its API key, or without keys its
// client address.
func searchBucket(r *http.Request) (bucket, label string) {
	if p := auth.FromContext(r.Context()); p != auth.Anonymous {
		return "key\x00" + p.Name, "API key " + strconv.Quote(p.Name)
	}
	addr := ratelimit.ClientAddr(r)
	return "addr\x00" + addr, "client address " + addr
}
