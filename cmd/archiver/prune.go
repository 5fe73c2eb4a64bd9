package main

import (
	"context"

	"github.com/spf13/pflag"

	"github.com/spillway/spillway/pkg/archive"
)

// pruneCmd is `archiver prune --older-than D [--apply]`: list (or drop) the archive's day
// partitions past the horizon that only PostgreSQL serves (see archive.Prune).
type pruneCmd struct {
	olderThan   string
	apply, json bool
}

func (c *pruneCmd) flags(fs *pflag.FlagSet) {
	fs.StringVar(&c.olderThan, "older-than", "", "drop day partitions whose whole day is older than this (e.g. 400d)")
	fs.BoolVar(&c.apply, "apply", false, "drop them (default: only list what would happen)")
	fs.BoolVar(&c.json, "json", false, "print JSON")
}

func (c *pruneCmd) run(ctx context.Context, e cmdEnv) error {
	age, err := olderThan("prune", c.olderThan, "400d")
	if err != nil {
		return err
	}
	s, closeStores, err := e.open(ctx, "spillway-archiver-prune", migrateSchema, archive.Options{})
	if err != nil {
		return err
	}
	defer closeStores()
	rep, err := s.a.Prune(ctx, archive.PruneRequest{OlderThan: age, Apply: c.apply})
	if rep != nil {
		err = report(c.json, rep, err)
	}
	return err
}
