package main

import (
	"log/slog"
	"testing"

	"github.com/spillway/spillway/api"
	"github.com/spillway/spillway/pkg/auth"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/testenv"
)

// TestRoutesMatchOpenAPI checks the router exactly as the binary serves it against
// api/openapi.yaml: every documented search path answers, every routed path is documented.
func TestRoutesMatchOpenAPI(t *testing.T) {
	cfg, _, err := config.Load(config.RoleSearch, nil, nil, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Elasticsearch = testenv.DefaultES("http://127.0.0.1:1") // never contacted by the check
	// With keys (the production shape: API and /metrics behind subrouters) and open on loopback.
	for name, a := range map[string]config.Auth{
		"keys": {Keys: config.Secret("ops:admin:" + auth.Hash(auth.NewKey()))},
		"open": {},
	} {
		t.Run(name, func(t *testing.T) {
			c := *cfg
			c.Auth, c.HTTP.Addr = a, "127.0.0.1:0"
			svc, _, err := build(&c, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			svc.Mount()
			api.CheckRoutes(t, svc.Router, "search")
		})
	}
}
