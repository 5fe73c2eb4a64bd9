package main

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/spillway/spillway/pkg/app"
	"github.com/spillway/spillway/pkg/archive"
	"github.com/spillway/spillway/pkg/config"
)

// retentionCmd is `archiver retention --older-than D [--apply]`: list (or drop) the daily indices
// past the horizon that PostgreSQL provably holds. Exit status 1 when an index is kept.
type retentionCmd struct {
	olderThan   string
	apply, json bool
}

func (c *retentionCmd) flags(fs *pflag.FlagSet) {
	fs.StringVar(&c.olderThan, "older-than", "", "drop daily indices whose whole day is older than this (e.g. 45d, 1080h)")
	fs.BoolVar(&c.apply, "apply", false, "move the cold boundary and delete (default: only list what would happen)")
	fs.BoolVar(&c.json, "json", false, "print JSON")
}

func (c *retentionCmd) run(ctx context.Context, e cmdEnv) error {
	age, err := olderThan("retention", c.olderThan, "45d")
	if err != nil {
		return err
	}
	// Listing is harmless with the cold tier off; dropping is not (config.RetentionAllowed).
	check := *e.cfg
	if !c.apply {
		check.Search.ColdTier = true
	}
	if err := config.RetentionAllowed(age, &check); err != nil {
		return &app.UsageError{Msg: "retention --older-than " + c.olderThan + ": " + err.Error()}
	}
	// The boundary table may be newer than the last archiver run: migrate.
	s, closeStores, err := e.open(ctx, "spillway-archiver-retention", migrateSchema, archive.Options{})
	if err != nil {
		return err
	}
	defer closeStores()
	rep, err := s.a.Retention(ctx, archive.RetentionRequest{OlderThan: age, Apply: c.apply}, e.cfg.RetentionGrace())
	if rep != nil {
		err = report(c.json, rep, err)
	}
	if err != nil {
		return err
	}
	if k := rep.Kept(); k > 0 {
		return fmt.Errorf("retention: kept %d index(es) that are not fully archived (and everything after them); run `archiver verify --repair` over their days, then retention again", k)
	}
	return nil
}
