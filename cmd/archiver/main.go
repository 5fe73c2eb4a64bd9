// Command archiver copies indexed events from Elasticsearch into PostgreSQL, exactly once,
// in COPY batches over a small fixed pool, and maintains the archive.
//
//	archiver [run]                                     archive continuously; serve /metrics, /healthz, /readyz
//	archiver verify --from T1 --to T2 [--repair]       compare both stores; exit 1 on mismatch
//	archiver status [--json]                           positions, lag, rows, partitions, last error, restores
//	archiver backfill --from T1 --to T2                archive a @timestamp range outside the feed
//	archiver retention --older-than 45d [--apply]      drop verified daily indices; exit 1 if one is kept
//	archiver prune --older-than 400d [--apply]         drop archive day partitions past the horizon and the cold boundary
//	archiver migrate [--batch N]                       move a version-1 archive into day partitions, verify, drop it
//	archiver import --file F.ndjson | --table T        load history older than the ingest horizon into the archive
//	archiver forget --client-id X [--apply]            remove a client's events from both stores, recorded
//
// Each command is a small type with its own flags and one run method over the archive's actions
// (pkg/archive), in a file of its own; main picks the command named first (none: run) and hands
// the rest of the arguments, configuration flags included, to the configuration loader.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/spillway/spillway/pkg/app"
	"github.com/spillway/spillway/pkg/config"
)

// command is one archiver subcommand.
type command interface {
	// flags registers the command's own flags (config.Load adds one per configuration key).
	flags(fs *pflag.FlagSet)
	// run runs the command; a *app.UsageError exits 2, another error 1.
	run(ctx context.Context, e cmdEnv) error
}

// cmdEnv is what every command gets.
type cmdEnv struct {
	cfg    *config.Config
	logger *slog.Logger
}

// commands are the subcommands, in the order usage lists them.
var commands = []struct {
	name, args, summary string
	make                func() command
}{
	{"run", "", "archive continuously; serve /metrics, /healthz and /readyz (the default)", func() command { return &runCmd{} }},
	{"verify", "--from T1 --to T2 [--bucket D] [--repair]", "compare both stores per time bucket; exit 1 on a mismatch", func() command { return &verifyCmd{} }},
	{"status", "[--json]", "positions, lag, rows, partitions, last error, verification, restores", func() command { return &statusCmd{} }},
	{"backfill", "--from T1 --to T2", "archive a @timestamp range outside the feed", func() command { return &backfillCmd{} }},
	{"retention", "--older-than D [--apply] [--json]", "drop verified daily indices past the horizon; exit 1 if one is kept", func() command { return &retentionCmd{} }},
	{"prune", "--older-than D [--apply] [--json]", "drop archive day partitions past the horizon and the cold boundary", func() command { return &pruneCmd{} }},
	{"migrate", "[--batch N]", "move a version-1 archive into day partitions, verify, drop it", func() command { return &migrateCmd{} }},
	{"import", "(--file F ... | --table T [--source-url U] [--columns M]) [--batch N] [--again]", "load history older than the ingest horizon", func() command { return &importCmd{} }},
	{"forget", "--client-id X [--by NAME] [--apply] [--json] [--wait D]", "remove one client's events from both stores, recorded", func() command { return &forgetCmd{} }},
}

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

// run picks the command named by the first argument (none, or a flag first: run) and runs it
// through app.Main; it returns the exit status.
func run(args []string, stderr io.Writer) int {
	name := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if name == "help" {
		usage(stderr, nil)
		return app.ExitOK
	}
	for _, c := range commands {
		if c.name != name {
			continue
		}
		cmd := c.make()
		fs := pflag.NewFlagSet("archiver "+name, pflag.ContinueOnError)
		cmd.flags(fs)
		fs.Usage = func() { usage(stderr, fs) }
		return app.Main(config.RoleArchiver, fs, args, func(ctx context.Context, cfg *config.Config, rest []string, logger *slog.Logger) error {
			if len(rest) > 0 {
				return &app.UsageError{Msg: fmt.Sprintf("archiver %s: unexpected arguments %q", name, rest)}
			}
			return cmd.run(ctx, cmdEnv{cfg: cfg, logger: logger.With("command", name)})
		})
	}
	names := make([]string, len(commands))
	for i, c := range commands {
		names[i] = c.name
	}
	fmt.Fprintf(stderr, "spillway archiver: unknown command %q (%s; help lists them)\n", name, strings.Join(names, ", "))
	return app.ExitUsage
}

// usage lists the commands, then the flags of fs when given.
func usage(w io.Writer, fs *pflag.FlagSet) {
	fmt.Fprintln(w, "usage: archiver [command] [flags] [--<config.key> value ...]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n  %-10s   %s\n", c.name, c.args, "", c.summary)
	}
	if fs != nil {
		fmt.Fprintln(w, "\nflags:")
		fs.PrintDefaults()
	}
}
