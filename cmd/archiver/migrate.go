package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/spillway/spillway/pkg/app"
	"github.com/spillway/spillway/pkg/archive"
)

// migrateCmd is `archiver migrate`: move a version-1 archive into the day partitions, verify
// every day by count and id digests, then drop the version-1 table (see archive.MigrateV1).
type migrateCmd struct{ batch int }

func (c *migrateCmd) flags(fs *pflag.FlagSet) {
	fs.IntVar(&c.batch, "batch", 10000, "rows moved per transaction")
}

func (c *migrateCmd) run(ctx context.Context, e cmdEnv) error {
	if c.batch < 1 || c.batch > 1_000_000 {
		return &app.UsageError{Msg: "--batch must be 1-1000000"}
	}
	s, closeStores, err := e.open(ctx, "spillway-archiver-migrate", migrateSchema, archive.Options{})
	if err != nil {
		return err
	}
	defer closeStores()
	rep, err := archive.MigrateV1(ctx, s.pg, c.batch, progress(e.logger, "migrate"))
	if rep != nil && rep.Pending {
		for _, d := range rep.Days {
			status := "ok"
			if !d.OK() {
				status = "MISSING"
			}
			fmt.Fprintf(os.Stdout, "%s  v1 rows %d digest %d  in partitions %d digest %d  %s\n", d.Day.Format(time.DateOnly),
				d.V1Rows, d.V1Hash, d.MovedRows, d.MovedHash, status)
		}
		e.logger.Info("migrate", "moved", rep.Moved, "inserted", rep.Inserted, "days_verified", len(rep.Days),
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
