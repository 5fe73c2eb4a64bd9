package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/spillway/spillway/pkg/app"
	"github.com/spillway/spillway/pkg/archive"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/pgstore"
)

// stores are a command's connections: Elasticsearch, the PostgreSQL pool, and the archive's
// actions over both, with the schema claimed for the index prefix.
type stores struct {
	es *esstore.Store
	pg *pgstore.Store
	a  *archive.Archiver
}

// schemaStep is what a command does with the schema before its work.
type schemaStep int

const (
	// migrateSchema applies the migrations: commands that may run before any archiver did
	// (backfill, import) or need a table newer than the last archiver run.
	migrateSchema schemaStep = iota
	// checkSchema only checks them: read-mostly commands must not change the schema.
	checkSchema
)

// open connects both stores (as application appName in pg_stat_activity), prepares the schema,
// builds the archive's actions with opts (Config, Logger, Indices and Boundary filled in) and
// claims the schema for the prefix. close releases the pool.
func (e cmdEnv) open(ctx context.Context, appName string, step schemaStep, opts archive.Options) (s stores, close func(), err error) {
	if s.es, s.pg, err = connect(ctx, e, appName); err != nil {
		return s, nil, err
	}
	close = s.pg.Close
	if step == migrateSchema {
		err = s.pg.Migrate(ctx)
	} else {
		err = s.pg.CheckSchema(ctx)
	}
	if err != nil {
		close()
		return s, nil, err
	}
	opts.Config, opts.Logger, opts.Indices, opts.Boundary = e.cfg.Archiver, e.logger, s.es, s.pg
	s.a = archive.New(s.es, archive.Postgres(s.pg), opts)
	if err := s.a.Claim(ctx); err != nil {
		close()
		return s, nil, err
	}
	return s, close, nil
}

// connect opens both stores without touching the schema. The pool connects lazily.
func connect(ctx context.Context, e cmdEnv, appName string) (*esstore.Store, *pgstore.Store, error) {
	es, err := esstore.New(e.cfg.Elasticsearch, e.logger.With("component", "esstore"))
	if err != nil {
		return nil, nil, err
	}
	pg, err := pgstore.Open(ctx, e.cfg.Postgres, pgstore.Options{ApplicationName: appName}, e.logger.With("component", "pgstore"))
	if err != nil {
		return nil, nil, err
	}
	return es, pg, nil
}

// progress is a bar on a terminal, periodic log lines otherwise.
func progress(logger *slog.Logger, what string) archive.Progress {
	if term.IsTerminal(int(os.Stderr.Fd())) {
		return archive.NewBar(os.Stderr, what)
	}
	return archive.NewLogProgress(logger, what, 10*time.Second)
}

// printJSON writes v indented to standard output.
func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// report prints rep as JSON or as its table, keeping err when there is one.
func report(asJSON bool, rep interface{ WriteTable(w io.Writer) error }, err error) error {
	var werr error
	if asJSON {
		werr = printJSON(rep)
	} else {
		werr = rep.WriteTable(os.Stdout)
	}
	if err != nil {
		return err
	}
	return werr
}

// timeRange is the --from/--to pair of verify and backfill.
type timeRange struct{ from, to string }

func (r *timeRange) flags(fs *pflag.FlagSet) {
	fs.StringVar(&r.from, "from", "", "start of the @timestamp range, inclusive (RFC 3339, YYYY-MM-DD, now, or -24h)")
	fs.StringVar(&r.to, "to", "", "end of the @timestamp range, exclusive")
}

func (r timeRange) parse() (from, to time.Time, err error) {
	if r.from == "" || r.to == "" {
		return from, to, &app.UsageError{Msg: "--from and --to are required"}
	}
	now := time.Now()
	if from, err = parseTime(r.from, now); err != nil {
		return from, to, &app.UsageError{Msg: "--from: " + err.Error()}
	}
	if to, err = parseTime(r.to, now); err != nil {
		return from, to, &app.UsageError{Msg: "--to: " + err.Error()}
	}
	if !from.Before(to) {
		return from, to, &app.UsageError{Msg: "--from must be before --to"}
	}
	return from, to, nil
}

// parseTime reads RFC 3339 (any fraction), a UTC date, "now", or a negative duration from now.
func parseTime(s string, now time.Time) (time.Time, error) {
	switch {
	case s == "now":
		return now.UTC(), nil
	case strings.HasPrefix(s, "-"):
		d, err := time.ParseDuration(s)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q is not a duration like -24h", s)
		}
		return now.Add(d).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time (RFC 3339, YYYY-MM-DD, now, or -24h)", s)
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

// olderThan reads a required --older-than.
func olderThan(cmd, value, example string) (time.Duration, error) {
	if value == "" {
		return 0, &app.UsageError{Msg: cmd + ": --older-than is required (e.g. --older-than " + example + ")"}
	}
	d, err := parseAge(value)
	if err != nil {
		return 0, &app.UsageError{Msg: "--older-than: " + err.Error()}
	}
	return d, nil
}
