package main

import (
	"context"

	"github.com/spf13/pflag"

	"github.com/spillway/spillway/pkg/archive"
)

// statusCmd is `archiver status`: positions, lag, rows, partitions, errors, restores.
type statusCmd struct{ json bool }

func (c *statusCmd) flags(fs *pflag.FlagSet) { fs.BoolVar(&c.json, "json", false, "print JSON") }

func (c *statusCmd) run(ctx context.Context, e cmdEnv) error {
	s, closeStores, err := e.open(ctx, "spillway-archiver-status", checkSchema, archive.Options{})
	if err != nil {
		return err
	}
	defer closeStores()
	rep, err := s.a.Status(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(rep)
	}
	return report(false, rep, nil)
}
