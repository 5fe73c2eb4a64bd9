package app

import (
	"context"
	"log/slog"
	"testing"

	"github.com/spillway/spillway/pkg/config"
)

// --version prints the version and exits 0 without running the service.
func TestMainVersion(t *testing.T) {
	ran := false
	code := Main(config.RoleSearch, nil, []string{"--version"}, func(context.Context, *config.Config, []string, *slog.Logger) error {
		ran = true
		return nil
	})
	if code != ExitOK || ran {
		t.Fatalf("--version: exit %d, ran %v; want 0 without running", code, ran)
	}
}
