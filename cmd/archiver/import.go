package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spillway/spillway/pkg/app"
	"github.com/spillway/spillway/pkg/archive"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/pgstore"
)

// importHistory is `archiver import`: load events older than the ingest horizon from NDJSON files
// or a PostgreSQL table into the archive, verify them by day, and make them readable through the
// cold tier (see archive/import.go). Exit status 1 lists invalid records by position.
func (f *flags) importHistory(ctx context.Context, cfg *config.Config, logger *slog.Logger) error {
	if (len(f.files) == 0) == (f.table == "") {
		return &app.UsageError{Msg: "import: give --file (one or more) or --table"}
	}
	if len(f.files) > 0 && (f.sourceURL != "" || f.columns != "") {
		return &app.UsageError{Msg: "import: --source-url and --columns apply to --table"}
	}
	if f.batch < 1 || f.batch > 1_000_000 {
		return &app.UsageError{Msg: "--batch must be 1-1000000"}
	}
	if !cfg.Search.ColdTier {
		return &app.UsageError{Msg: "import: imported days are served from PostgreSQL: set search.cold_tier=true (here and on search)"}
	}
	var src archive.ImportSource
	if len(f.files) > 0 {
		fs, err := archive.NewFileSource(f.files...)
		if err != nil {
			return &app.UsageError{Msg: "import: " + err.Error()}
		}
		src = fs
	} else {
		cols, err := pgstore.ParseColumnMap(f.columns)
		if err != nil {
			return &app.UsageError{Msg: "--columns: " + err.Error()}
		}
		url := f.sourceURL
		if url == "" {
			url = cfg.Postgres.URL.Value()
		}
		ts, err := pgstore.OpenTableSource(ctx, url, f.table, cols)
		if err != nil {
			return err
		}
		defer ts.Close()
		src = ts
	}
	es, pg, err := open(ctx, cfg, logger, "spillway-archiver-import")
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
	rep, err := a.Import(ctx, pg, archive.ImportRequest{Source: src, Limits: cfg.Ingest.Limits(), Batch: f.batch, Again: f.again,
		Progress: progress(logger, "import")})
	var ve *event.ValidationError
	if errors.As(err, &ve) {
		fmt.Fprintf(os.Stderr, "%s\n", ve.Message)
		for _, d := range ve.Details {
			field := d.Field
			if field == "" {
				field = "(record)"
			}
			fmt.Fprintf(os.Stderr, "record %d (line %d): %s: %s\n", d.Index, d.Index+1, field, d.Message)
		}
		return errors.New("import: invalid records, nothing imported")
	}
	if rep != nil {
		for _, d := range rep.Days {
			status := "ok"
			if !d.OK() {
				status = "MISSING"
			}
			fmt.Fprintf(os.Stdout, "%s  imported %d digest %d  in the archive %d digest %d  %s\n", d.Day.Format(time.DateOnly),
				d.Source, d.SourceHash, d.Archived, d.ArchiveHash, status)
		}
		logger.Info("import", "source", rep.Source, "records", rep.Records, "resumed_at", rep.Resumed, "inserted", rep.Inserted,
			"already_archived", rep.Existing, "boundary_before", rep.BoundaryBefore, "boundary_after", rep.BoundaryAfter,
			"took", rep.Duration.Round(time.Millisecond).String())
	}
	if err != nil {
		return err
	}
	b := "unchanged"
	if !rep.BoundaryAfter.IsZero() {
		b = rep.BoundaryAfter.Format(time.RFC3339)
	}
	fmt.Fprintf(os.Stdout, "imported: %d records (%d new to the archive, %d already there), %d days verified; cold boundary %s\n",
		rep.Records, rep.Inserted, rep.Existing, len(rep.Days), b)
	return nil
}
