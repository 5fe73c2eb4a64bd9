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

// forgetCmd is `archiver forget --client-id X [--apply]`: count (or remove, with --apply) one
// client's events in both stores, recording the erasure (see archive/forget.go).
type forgetCmd struct {
	clientID, by string
	apply, json  bool
	wait         time.Duration
}

func (c *forgetCmd) flags(fs *pflag.FlagSet) {
	fs.StringVar(&c.clientID, "client-id", "", "the clientId whose events to remove")
	fs.StringVar(&c.by, "by", os.Getenv("USER"), "who asked (recorded with the erasure)")
	fs.BoolVar(&c.apply, "apply", false, "remove them (default: only count)")
	fs.BoolVar(&c.json, "json", false, "print JSON")
	fs.DurationVar(&c.wait, "wait", 2*time.Minute, "how long to wait for the running archiver to pass the deletion")
}

func (c *forgetCmd) run(ctx context.Context, e cmdEnv) error {
	if c.clientID == "" {
		return &app.UsageError{Msg: "forget: --client-id is required"}
	}
	if c.apply && c.by == "" {
		return &app.UsageError{Msg: "forget: --by is required with --apply (who asked; $USER is empty)"}
	}
	s, closeStores, err := e.open(ctx, "spillway-archiver-forget", migrateSchema, archive.Options{})
	if err != nil {
		return err
	}
	defer closeStores()
	rep, err := s.a.Forget(ctx, s.es, s.pg, archive.ForgetRequest{ClientID: c.clientID, By: c.by, Apply: c.apply, Wait: c.wait})
	if rep != nil {
		switch {
		case c.json:
			if werr := printJSON(rep); werr != nil && err == nil {
				err = werr
			}
		case !c.apply:
			fmt.Fprintf(os.Stdout, "client %q: %d events in Elasticsearch, %d in PostgreSQL (listing only: --apply removes them)\n",
				rep.ClientID, rep.ESFound, rep.PGFound)
		default:
			fmt.Fprintf(os.Stdout, "client %q: erasure %d by %s: %d events deleted from Elasticsearch, %d from PostgreSQL; %d and %d remain\n",
				rep.ClientID, rep.Erasure, rep.By, rep.ESDeleted, rep.PGDeleted, rep.ESRemaining, rep.PGRemaining)
		}
	}
	if err != nil {
		return err
	}
	if rep.Applied && rep.ESRemaining+rep.PGRemaining > 0 {
		return fmt.Errorf("forget: %d events of the client arrived meanwhile: revoke its key and run forget again", rep.ESRemaining+rep.PGRemaining)
	}
	return nil
}
