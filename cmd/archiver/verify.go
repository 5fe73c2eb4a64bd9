package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/spillway/spillway/pkg/archive"
)

// verifyCmd is `archiver verify`: compare both stores over a range; exit 1 on a mismatch.
type verifyCmd struct {
	timeRange
	bucket time.Duration
	repair bool
}

func (c *verifyCmd) flags(fs *pflag.FlagSet) {
	c.timeRange.flags(fs)
	fs.DurationVar(&c.bucket, "bucket", 0, "bucket width (default archiver.verify_bucket)")
	fs.BoolVar(&c.repair, "repair", false, "copy events missing in PostgreSQL from Elasticsearch")
}

func (c *verifyCmd) run(ctx context.Context, e cmdEnv) error {
	from, to, err := c.parse()
	if err != nil {
		return err
	}
	s, closeStores, err := e.open(ctx, "spillway-archiver-verify", checkSchema, archive.Options{})
	if err != nil {
		return err
	}
	defer closeStores()
	if b, ok, err := s.pg.ColdBoundary(ctx, s.es.Prefix()); err == nil && ok && from.Before(b) {
		fmt.Fprintf(os.Stderr, "note: the range starts below the cold boundary %s: retention dropped the indices before it, so their archived rows (and imported ones) count as extra\n",
			b.Format(time.RFC3339))
	}
	rep, err := s.a.VerifyAndRecord(ctx, archive.VerifyRequest{From: from, To: to, Bucket: c.bucket, Repair: c.repair})
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
