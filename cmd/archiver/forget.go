package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"

	"github.com/spillway/spillway/pkg/app"
	"github.com/spillway/spillway/pkg/archive"
	"github.com/spillway/spillway/pkg/config"
)

// forget is `archiver forget --client-id X [--apply]`: count (or remove, with --apply) one
// client's events in both stores, recording the erasure (see archive/forget.go).
func (f *flags) forget(ctx context.Context, cfg *config.Config, logger *slog.Logger) error {
	if f.clientID == "" {
		return &app.UsageError{Msg: "forget: --client-id is required"}
	}
	if f.apply && f.by == "" {
		return &app.UsageError{Msg: "forget: --by is required with --apply (who asked; $USER is empty)"}
	}
	es, pg, err := open(ctx, cfg, logger, "spillway-archiver-forget")
	if err != nil {
		return err
	}
	defer pg.Close()
	if err := pg.Migrate(ctx); err != nil {
		return err
	}
	a := archive.New(es, archive.Postgres(pg), archive.Options{Config: cfg.Archiver, Logger: logger})
	if err := a.Claim(ctx); err != nil {
		return err
	}
	rep, err := a.Forget(ctx, es, pg, archive.ForgetRequest{ClientID: f.clientID, By: f.by, Apply: f.apply, Wait: f.wait})
	if rep != nil {
		if f.json {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			if werr := enc.Encode(rep); werr != nil && err == nil {
				err = werr
			}
		} else if !f.apply {
			fmt.Fprintf(os.Stdout, "client %q: %d events in Elasticsearch, %d in PostgreSQL (listing only: --apply removes them)\n",
				rep.ClientID, rep.ESFound, rep.PGFound)
		} else {
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
