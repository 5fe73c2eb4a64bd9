package testenv

import (
	"testing"

	"github.com/gorilla/mux"

	"github.com/spillway/spillway/api"
	"github.com/spillway/spillway/pkg/auth"
	"github.com/spillway/spillway/pkg/config"
)

// LoadConfig is role's configuration from its defaults and args alone: no environment, no file.
func LoadConfig(t testing.TB, role config.Role, args ...string) *config.Config {
	t.Helper()
	cfg, _, err := config.Load(role, nil, args, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// CheckServedRoutes checks, with api.CheckRoutes, the router that build wires from cfg as the
// binary serves it, in both shapes authentication gives it: with API keys (the API and /metrics
// behind subrouters) and open on loopback.
func CheckServedRoutes(t *testing.T, cfg *config.Config, service string, build func(*config.Config) (*mux.Router, error)) {
	for name, a := range map[string]config.Auth{
		"keys": {Keys: config.Secret("ops:admin:" + auth.Hash(auth.NewKey()))},
		"open": {},
	} {
		t.Run(name, func(t *testing.T) {
			c := *cfg
			c.Auth, c.HTTP.Addr = a, "127.0.0.1:0"
			router, err := build(&c)
			if err != nil {
				t.Fatal(err)
			}
			api.CheckRoutes(t, router, service)
		})
	}
}
