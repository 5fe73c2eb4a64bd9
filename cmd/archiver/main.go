// Command archiver copies indexed events from Elasticsearch into PostgreSQL, exactly once,
// in COPY batches over a small fixed pool.
//
//	archiver [run]                               archive continuously; serve /metrics, /healthz, /readyz
//	archiver verify --from T1 --to T2 [--repair] compare both stores; exit 1 on mismatch
//	archiver status [--json]                     positions, lag, rows, last error
//	archiver backfill --from T1 --to T2          archive a @timestamp range outside the feed
//	archiver retention --older-than 45d [--apply] drop verified daily indices; exit 1 if one is kept
//	archiver prune --older-than 400d [--apply]   drop archive day partitions past the horizon and the cold boundary
//	archiver migrate [--batch N]                 move a version-1 archive into day partitions, verify, drop it
//	archiver import --file F.ndjson | --table T  load history older than the ingest horizon into the archive
//	archiver forget --client-id X [--apply]      remove a client's events from both stores, recorded
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/spillway/spillway/pkg/app"
	"github.com/spillway/spillway/pkg/archive"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/httpx"
	"github.com/spillway/spillway/pkg/pgstore"
)

// flags are the subcommands' own flags (config.Load adds one flag per configuration key).
type flags struct {
	fs       *pflag.FlagSet
	from, to string
	bucket   time.Duration
	repair   bool
	json     bool
	// retention, prune
	olderThan string
	apply     bool
	// migrate, import
	batch int
	// import
	files                     []string
	table, sourceURL, columns string
	again                     bool
	// forget
	clientID, by string
	wait         time.Duration
}

func main() {
	f := &flags{fs: pflag.NewFlagSet("archiver", pflag.ContinueOnError)}
	f.fs.StringVar(&f.from, "from", "", "verify, backfill: start of the @timestamp range, inclusive (RFC 3339, YYYY-MM-DD, now, or -24h)")
	f.fs.StringVar(&f.to, "to", "", "verify, backfill: end of the @timestamp range, exclusive")
	f.fs.DurationVar(&f.bucket, "bucket", 0, "verify: bucket width (default archiver.verify_bucket)")
	f.fs.BoolVar(&f.repair, "repair", false, "verify: copy events missing in PostgreSQL from Elasticsearch")
	f.fs.BoolVar(&f.json, "json", false, "status, retention, prune: print JSON")
	f.fs.StringVar(&f.olderThan, "older-than", "", "retention, prune: drop days wholly older than this (e.g. 45d, 1080h)")
	f.fs.BoolVar(&f.apply, "apply", false, "retention, prune: act (default: only list what would happen)")
	f.fs.IntVar(&f.batch, "batch", 10000, "migrate, import: rows per transaction")
	f.fs.StringSliceVar(&f.files, "file", nil, "import: NDJSON file of events (repeatable; read in order)")
	f.fs.StringVar(&f.table, "table", "", "import: PostgreSQL table (or schema.table) of events")
	f.fs.StringVar(&f.sourceURL, "source-url", "", "import: database of --table (default postgres.url)")
	f.fs.StringVar(&f.columns, "columns", "", "import: field=column for --table, e.g. id=event_id,clientId=client,timestamp=created_at,payload=data,type= (defaults: id, client_id, type, ts, payload)")
	f.fs.BoolVar(&f.again, "again", false, "import: import a source that was imported before once more")
	f.fs.StringVar(&f.clientID, "client-id", "", "forget: the clientId whose events to remove")
	f.fs.StringVar(&f.by, "by", os.Getenv("USER"), "forget: who asked (recorded with the erasure)")
	f.fs.DurationVar(&f.wait, "wait", 2*time.Minute, "forget: how long to wait for the running archiver to pass the deletion")
	f.fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: archiver [run | verify --from T1 --to T2 [--repair] | status [--json] | backfill --from T1 --to T2 | retention --older-than D [--apply] [--json] | prune --older-than D [--apply] [--json] | migrate [--batch N] | import (--file F ... | --table T [--source-url U] [--columns M]) [--again] | forget --client-id X [--by NAME] [--apply] [--json]] [--<config.key> value ...]\n")
		f.fs.PrintDefaults()
	}
	os.Exit(app.Main(config.RoleArchiver, f.fs, os.Args[1:], f.run))
}

func (f *flags) run(ctx context.Context, cfg *config.Config, args []string, logger *slog.Logger) error {
	cmd := "run"
	if len(args) > 0 {
		cmd = args[0]
	}
	if len(args) > 1 {
		return &app.UsageError{Msg: fmt.Sprintf("unexpected arguments %q", args[1:])}
	}
	allowed := map[string][]string{"run": nil, "verify": {"from", "to", "bucket", "repair"}, "status": {"json"}, "backfill": {"from", "to"},
		"retention": {"older-than", "apply", "json"}, "prune": {"older-than", "apply", "json"}, "migrate": {"batch"},
		"import": {"file", "table", "source-url", "columns", "batch", "again"},
		"forget": {"client-id", "by", "apply", "json", "wait"}}
	own, ok := allowed[cmd]
	if !ok {
		return &app.UsageError{Msg: fmt.Sprintf("unknown command %q (run, verify, status, backfill, retention, prune, migrate, import, forget)", cmd)}
	}
	for _, name := range []string{"from", "to", "bucket", "repair", "json", "older-than", "apply", "batch", "file", "table", "source-url", "columns", "again", "client-id", "by", "wait"} {
		if f.fs.Changed(name) && !contains(own, name) {
			return &app.UsageError{Msg: fmt.Sprintf("--%s does not apply to %s", name, cmd)}
		}
	}
	logger = logger.With("command", cmd)
	switch cmd {
	case "verify":
		from, to, err := f.rangeFlags()
		if err != nil {
			return err
		}
		return verify(ctx, cfg, logger, archive.VerifyRequest{From: from, To: to, Bucket: f.bucket, Repair: f.repair})
	case "status":
		return status(ctx, cfg, logger, f.json)
	case "backfill":
		from, to, err := f.rangeFlags()
		if err != nil {
			return err
		}
		return backfill(ctx, cfg, logger, from, to)
	case "retention":
		return f.retention(ctx, cfg, logger)
	case "prune":
		return f.prune(ctx, cfg, logger)
	case "migrate":
		return f.migrate(ctx, cfg, logger)
	case "import":
		return f.importHistory(ctx, cfg, logger)
	case "forget":
		return f.forget(ctx, cfg, logger)
	}
	return serve(ctx, cfg, logger)
}

// serve is `archiver run`: the continuous archiver behind /metrics, /healthz and /readyz.
func serve(ctx context.Context, cfg *config.Config, logger *slog.Logger) error {
	if cfg.Postgres.MaxConns < 2 {
		return &app.UsageError{Msg: "postgres.max_conns: archiver run needs at least 2 (one connection holds the lease and writes the batches, the rest serve verification and health checks)"}
	}
	logger.Info("starting", "config", cfg)
	es, pg, err := open(ctx, cfg, logger, "spillway-archiver")
	if err != nil {
		return err
	}
	defer pg.Close()
	reg := httpx.NewRegistry()
	// retention_after was validated with the configuration (config.RetentionAllowed).
	a := archive.New(es, archive.Postgres(pg), archive.Options{Config: cfg.Archiver, Logger: logger.With("component", "archiver"),
		Metrics: archive.NewMetrics(reg, pg), Indices: es, Boundary: pg, RetentionGrace: cfg.RetentionGrace(),
		PartitionsAhead: cfg.Ingest.MaxFutureSkew})
	health := httpx.NewHealth(2 * time.Second)
	health.AddCheck("elasticsearch", es.Ping)
	health.AddCheck("postgres", pg.Ping)
	health.AddCheck("schema", pg.CheckSchema)

	// The archiver outlives the signal: on shutdown, Drain asks it to finish its batch.
	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Run returns early only on an error retrying cannot fix (another prefix owns the schema):
	// then the service stops too, and the process exits with that error.
	serveCtx, stopServing := context.WithCancel(ctx)
	defer stopServing()
	done := make(chan error, 1)
	go func() {
		err := a.Run(runCtx)
		if err != nil {
			stopServing()
		}
		done <- err
	}()
	err = app.Serve(serveCtx, app.Service{
		Name: "archiver", Logger: logger, HTTP: cfg.HTTP, Router: httpx.NewRouter(),
		Registry: reg, Health: health, Drain: a.Stop,
	})
	cancel()
	if rerr := <-done; err == nil {
		err = rerr
	}
	return err
}

func verify(ctx context.Context, cfg *config.Config, logger *slog.Logger, req archive.VerifyRequest) error {
	es, pg, err := open(ctx, cfg, logger, "spillway-archiver-verify")
	if err != nil {
		return err
	}
	defer pg.Close()
	if err := pg.CheckSchema(ctx); err != nil {
		return err
	}
	if b, ok, err := pg.ColdBoundary(ctx, es.Prefix()); err == nil && ok && req.From.Before(b) {
		fmt.Fprintf(os.Stderr, "note: the range starts below the cold boundary %s: retention dropped the indices before it, so their archived rows count as extra\n",
			b.Format(time.RFC3339))
	}
	a := archive.New(es, archive.Postgres(pg), archive.Options{Config: cfg.Archiver, Logger: logger})
	if err := a.Claim(ctx); err != nil {
		return err
	}
	rep, err := a.VerifyAndRecord(ctx, req)
	if err != nil {
		return err
	}
	if err := rep.WriteTable(os.Stdout); err != nil {
		return err
	}
	if !rep.OK() {
		return fmt.Errorf("verify: %d missing (%d repaired), %d extra", rep.Missing, rep.Repaired, rep.Extra)
	}
	return nil
}

func status(ctx context.Context, cfg *config.Config, logger *slog.Logger, asJSON bool) error {
	es, pg, err := open(ctx, cfg, logger, "spillway-archiver-status")
	if err != nil {
		return err
	}
	defer pg.Close()
	if err := pg.CheckSchema(ctx); err != nil {
		return err
	}
	a := archive.New(es, archive.Postgres(pg), archive.Options{Config: cfg.Archiver, Logger: logger})
	if err := a.Claim(ctx); err != nil {
		return err
	}
	rep, err := a.Status(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		return rep.WriteJSON(os.Stdout)
	}
	return rep.WriteTable(os.Stdout)
}

func backfill(ctx context.Context, cfg *config.Config, logger *slog.Logger, from, to time.Time) error {
	es, pg, err := open(ctx, cfg, logger, "spillway-archiver-backfill")
	if err != nil {
		return err
	}
	defer pg.Close()
	// Backfill may run before any archiver did (data indexed before the archive existed).
	if err := pg.Migrate(ctx); err != nil {
		return err
	}
	a := archive.New(es, archive.Postgres(pg), archive.Options{Config: cfg.Archiver, Logger: logger,
		Writers: int(min(cfg.Postgres.MaxConns, 4))})
	if err := a.Claim(ctx); err != nil {
		return err
	}
	rep, err := a.Backfill(ctx, from, to, progress(logger, "backfill"))
	if rep != nil {
		logger.Info("backfill done", "from", rep.From, "to", rep.To, "read", rep.Read, "inserted", rep.Inserted,
			"already_archived", rep.Read-rep.Inserted, "took", rep.Duration.Round(time.Millisecond).String())
	}
	return err
}

// progress is a bar on a terminal, periodic log lines otherwise.
func progress(logger *slog.Logger, what string) archive.Progress {
	if term.IsTerminal(int(os.Stderr.Fd())) {
		return archive.NewBar(os.Stderr, what)
	}
	return archive.NewLogProgress(logger, what, 10*time.Second)
}

func open(ctx context.Context, cfg *config.Config, logger *slog.Logger, appName string) (*esstore.Store, *pgstore.Store, error) {
	es, err := esstore.New(cfg.Elasticsearch, logger.With("component", "esstore"))
	if err != nil {
		return nil, nil, err
	}
	pg, err := pgstore.Open(ctx, cfg.Postgres, pgstore.Options{ApplicationName: appName}, logger.With("component", "pgstore"))
	if err != nil {
		return nil, nil, err
	}
	return es, pg, nil
}

func (f *flags) rangeFlags() (from, to time.Time, err error) {
	if f.from == "" || f.to == "" {
		return from, to, &app.UsageError{Msg: "--from and --to are required"}
	}
	now := time.Now()
	if from, err = parseTime(f.from, now); err != nil {
		return from, to, &app.UsageError{Msg: "--from: " + err.Error()}
	}
	if to, err = parseTime(f.to, now); err != nil {
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

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
