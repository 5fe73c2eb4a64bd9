package main

import (
	"log/slog"
	"testing"

	"github.com/gorilla/mux"

	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/config"
)

// TestRoutesMatchOpenAPI checks the router exactly as the binary serves it against
// api/openapi.yaml: every documented search path answers, every routed path is documented.
func TestRoutesMatchOpenAPI(t *testing.T) {
	cfg := testenv.LoadConfig(t, config.RoleSearch)
	cfg.Elasticsearch = testenv.DefaultES("http://127.0.0.1:1") // never contacted by the check
	testenv.CheckServedRoutes(t, cfg, "search", func(c *config.Config) (*mux.Router, error) {
		svc, _, err := build(c, slog.New(slog.DiscardHandler))
		if err != nil {
			return nil, err
		}
		svc.Mount()
		return svc.Router, nil
	})
}
