package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/spillway/spillway/pkg/app"
	"github.com/spillway/spillway/pkg/archive"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/pgstore"
)

// importCmd is `archiver import`: load events older than the ingest horizon from NDJSON files or
// a PostgreSQL table into the archive, verify them by day, and make them readable through the
// cold tier (see archive/import.go). Exit status 1 lists invalid records by position.
type importCmd struct {
	files                     []string
	table, sourceURL, columns string
	batch                     int
	again                     bool
}

func (c *importCmd) flags(fs *pflag.FlagSet) {
	fs.StringSliceVar(&c.files, "file", nil, "NDJSON file of events (repeatable; read in order)")
	fs.StringVar(&c.table, "table", "", "PostgreSQL table (or schema.table) of events")
	fs.StringVar(&c.sourceURL, "source-url", "", "database of --table (default postgres.url)")
	fs.StringVar(&c.columns, "columns", "", "field=column for --table, e.g. id=event_id,clientId=client,timestamp=created_at,payload=data,type= (defaults: id, client_id, type, ts, payload)")
	fs.IntVar(&c.batch, "batch", 10000, "records per transaction")
	fs.BoolVar(&c.again, "again", false, "import a source that was imported before once more")
}

func (c *importCmd) run(ctx context.Context, e cmdEnv) error {
	if (len(c.files) == 0) == (c.table == "") {
		return &app.UsageError{Msg: "import: give --file (one or more) or --table"}
	}
	if len(c.files) > 0 && (c.sourceURL != "" || c.columns != "") {
		return &app.UsageError{Msg: "import: --source-url and --columns apply to --table"}
	}
	if c.batch < 1 || c.batch > 1_000_000 {
		return &app.UsageError{Msg: "--batch must be 1-1000000"}
	}
	if !e.cfg.Search.ColdTier {
		return &app.UsageError{Msg: "import: imported days are served from PostgreSQL: set search.cold_tier=true (here and on search)"}
	}
	var src archive.ImportSource
	if len(c.files) > 0 {
		fs, err := archive.NewFileSource(c.files...)
		if err != nil {
			return &app.UsageError{Msg: "import: " + err.Error()}
		}
		src = fs
	} else {
		cols, err := pgstore.ParseColumnMap(c.columns)
		if err != nil {
			return &app.UsageError{Msg: "--columns: " + err.Error()}
		}
		url := c.sourceURL
		if url == "" {
			url = e.cfg.Postgres.URL.Value()
		}
		ts, err := pgstore.OpenTableSource(ctx, url, c.table, cols)
		if err != nil {
			return err
		}
		defer ts.Close()
		src = ts
	}
	s, closeStores, err := e.open(ctx, "spillway-archiver-import", migrateSchema, archive.Options{})
	if err != nil {
		return err
	}
	defer closeStores()
	rep, err := s.a.Import(ctx, s.pg, archive.ImportRequest{Source: src, Limits: e.cfg.Ingest.Limits(), Batch: c.batch, Again: c.again,
		Progress: progress(e.logger, "import")})
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
		e.logger.Info("import", "source", rep.Source, "records", rep.Records, "resumed_at", rep.Resumed, "inserted", rep.Inserted,
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
