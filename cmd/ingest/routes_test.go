package main

import (
	"context"
	"log/slog"
	"testing"

	"github.com/gorilla/mux"

	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/config"
)

// TestRoutesMatchOpenAPI checks the router exactly as the binary serves it against
// api/openapi.yaml: every documented ingest path answers, every routed path is documented.
func TestRoutesMatchOpenAPI(t *testing.T) {
	cfg := testenv.LoadConfig(t, config.RoleIngest)
	cfg.Elasticsearch = testenv.DefaultES("http://127.0.0.1:1") // never contacted by the check
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // stops the background template installer
	testenv.CheckServedRoutes(t, cfg, "ingest", func(c *config.Config) (*mux.Router, error) {
		svc, err := wire(ctx, c, slog.New(slog.DiscardHandler))
		if err != nil {
			return nil, err
		}
		svc.Mount()
		return svc.Router, nil
	})
}
