package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spillway/spillway/pkg/app"
	"github.com/spillway/spillway/pkg/archive"
	"github.com/spillway/spillway/pkg/config"
)

// retention is `archiver retention --older-than D [--apply]`: list (or drop) the daily indices
// past the horizon that PostgreSQL provably holds. Exit status 1 when an index is kept.
func (f *flags) retention(ctx context.Context, cfg *config.Config, logger *slog.Logger) error {
	if f.olderThan == "" {
		return &app.UsageError{Msg: "retention: --older-than is required (e.g. --older-than 45d)"}
	}
	olderThan, err := parseAge(f.olderThan)
	if err != nil {
		return &app.UsageError{Msg: "--older-than: " + err.Error()}
	}
	// Listing is harmless with the cold tier off; dropping is not (config.RetentionAllowed).
	check := *cfg
	if !f.apply {
		check.Search.ColdTier = true
	}
	if err := config.RetentionAllowed(olderThan, &check); err != nil {
		return &app.UsageError{Msg: "retention --older-than " + f.olderThan + ": " + err.Error()}
	}
	es, pg, err := open(ctx, cfg, logger, "spillway-archiver-retention")
	if err != nil {
		return err
	}
	defer pg.Close()
	if err := pg.Migrate(ctx); err != nil { // the boundary table may be newer than the last archiver run
		return err
	}
	a := archive.New(es, archive.Postgres(pg), archive.Options{Config: cfg.Archiver, Logger: logger, Indices: es, Boundary: pg})
	rep, err := a.Retention(ctx, archive.RetentionRequest{OlderThan: olderThan, Apply: f.apply}, cfg.RetentionGrace())
	if rep != nil {
		if f.json {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			if werr := enc.Encode(rep); werr != nil && err == nil {
				err = werr
			}
		} else if werr := rep.WriteTable(os.Stdout); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		return err
	}
	if k := rep.Kept(); k > 0 {
		return fmt.Errorf("retention: kept %d index(es) that are not fully archived (and everything after them); run `archiver verify --repair` over their days, then retention again", k)
	}
	return nil
}

// parseAge reads a Go duration or a number of days ("45d").
func parseAge(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 || n > 100000 {
			return 0, fmt.Errorf("%q is not a number of days like 45d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a positive duration like 45d or 1080h", s)
	}
	return d, nil
}
