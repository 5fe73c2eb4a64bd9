package main

import (
	"context"
	"time"

	"github.com/spf13/pflag"

	"github.com/spillway/spillway/pkg/archive"
)

// backfillCmd is `archiver backfill`: archive a @timestamp range outside the feed.
type backfillCmd struct{ timeRange }

func (c *backfillCmd) flags(fs *pflag.FlagSet) { c.timeRange.flags(fs) }

func (c *backfillCmd) run(ctx context.Context, e cmdEnv) error {
	from, to, err := c.parse()
	if err != nil {
		return err
	}
	// Backfill may run before any archiver did (data indexed before the archive existed).
	s, closeStores, err := e.open(ctx, "spillway-archiver-backfill", migrateSchema,
		archive.Options{Writers: int(min(e.cfg.Postgres.MaxConns, 4))})
	if err != nil {
		return err
	}
	defer closeStores()
	rep, err := s.a.Backfill(ctx, from, to, progress(e.logger, "backfill"))
	if rep != nil {
		e.logger.Info("backfill done", "from", rep.From, "to", rep.To, "read", rep.Read, "inserted", rep.Inserted,
			"already_archived", rep.Read-rep.Inserted, "took", rep.Duration.Round(time.Millisecond).String())
	}
	return err
}
