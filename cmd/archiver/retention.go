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
	if err := a.Claim(ctx); err != nil {
		return err
	}
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

// prune is `archiver prune --older-than D [--apply]`: list (or drop) the archive's day
// partitions past the horizon that only PostgreSQL serves (see archive.Prune).
func (f *flags) prune(ctx context.Context, cfg *config.Config, logger *slog.Logger) error {
	if f.olderThan == "" {
		return &app.UsageError{Msg: "prune: --older-than is required (e.g. --older-than 400d)"}
	}
	olderThan, err := parseAge(f.olderThan)
	if err != nil {
		return &app.UsageError{Msg: "--older-than: " + err.Error()}
	}
	es, pg, err := open(ctx, cfg, logger, "spillway-archiver-prune")
	if err != nil {
		return err
	}
	defer pg.Close()
	if err := pg.Migrate(ctx); err != nil {
		return err
	}
	a := archive.New(es, archive.Postgres(pg), archive.Options{Config: cfg.Archiver, Logger: logger, Indices: es, Boundary: pg})
	if err := a.Claim(ctx); err != nil {
		return err
	}
	rep, err := a.Prune(ctx, archive.PruneRequest{OlderThan: olderThan, Apply: f.apply})
	if rep != nil {
		var werr error
		if f.json {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			werr = enc.Encode(rep)
		} else {
			werr = rep.WriteTable(os.Stdout)
		}
		if err == nil {
			err = werr
		}
	}
	return err
}

// migrate is `archiver migrate`: move a version-1 archive into the day partitions, verify
// every day by count and id digests, then drop the version-1 table (see archive.MigrateV1).
func (f *flags) migrate(ctx context.Context, cfg *config.Config, logger *slog.Logger) error {
	if f.batch < 1 || f.batch > 1_000_000 {
		return &app.UsageError{Msg: "--batch must be 1-1000000"}
	}
	es, pg, err := open(ctx, cfg, logger, "spillway-archiver-migrate")
	if err != nil {
		return err
	}
	defer pg.Close()
	if err := pg.Migrate(ctx); err != nil {
		return err
	}
	a := archive.New(es, archive.Postgres(pg), archive.Options{Config: cfg.Archiver, Logger: logger})
	if err := a.Claim(ctx); err != nil {
		return err
	}
	rep, err := archive.MigrateV1(ctx, pg, f.batch, progress(logger, "migrate"))
	if rep != nil && rep.Pending {
		for _, d := range rep.Days {
			status := "ok"
			if !d.OK() {
				status = "MISSING"
			}
			fmt.Fprintf(os.Stdout, "%s  v1 rows %d digest %d  in partitions %d digest %d  %s\n", d.Day.Format(time.DateOnly),
				d.V1Rows, d.V1Hash, d.MovedRows, d.MovedHash, status)
		}
		logger.Info("migrate", "moved", rep.Moved, "inserted", rep.Inserted, "days_verified", len(rep.Days),
			"finished", rep.Finished, "took", rep.Duration.Round(time.Millisecond).String())
	}
	if err != nil {
		return err
	}
	if !rep.Pending {
		fmt.Fprintln(os.Stdout, "nothing to migrate: the archive is partitioned by day")
		return nil
	}
	fmt.Fprintf(os.Stdout, "migrated: %d rows moved in this run, %d days verified, events_v1 dropped\n", rep.Moved, len(rep.Days))
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
