package testenv

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/pgstore"
)

// writers holds one bulk writer per store, so tests that write in a loop share its connections.
var writers sync.Map // *esstore.Store → *esstore.BulkWriter

// BulkCreate writes events through the store's own write path (esstore.BulkWriter, the one
// ingest uses), without waiting for a refresh. created counts new documents, duplicates the
// (id, day) pairs that already existed; a rejected event is an error.
func BulkCreate(ctx context.Context, es *esstore.Store, events []event.Event) (created, duplicates int, err error) {
	if len(events) == 0 {
		return 0, 0, nil
	}
	w, err := writer(es)
	if err != nil {
		return 0, 0, err
	}
	out, err := w.Write(ctx, events, false)
	if err != nil {
		return 0, 0, err
	}
	var errs []error
	for i, o := range out {
		switch o.Result {
		case event.Created:
			created++
		case event.Duplicate:
			duplicates++
		default:
			errs = append(errs, fmt.Errorf("event %s: %s (status %d): %s", events[i].ID, o.Result, o.Status, o.Reason))
		}
	}
	return created, duplicates, errors.Join(errs...)
}

// writer is the store's shared bulk writer.
func writer(es *esstore.Store) (*esstore.BulkWriter, error) {
	if w, ok := writers.Load(es); ok {
		return w.(*esstore.BulkWriter), nil
	}
	w, err := es.NewBulkWriter(esstore.BulkConfig{MaxConcurrent: 4, FlushBytes: 5 << 20})
	if err != nil {
		return nil, err
	}
	got, _ := writers.LoadOrStore(es, w)
	return got.(*esstore.BulkWriter), nil
}

// pools holds one pool per PostgreSQL configuration a test asked DB for.
var pools sync.Map // poolKey → *pgxpool.Pool

type poolKey struct{ url, schema string }

// DB is a small pool on cfg's database with cfg's schema first on the search path, for a
// test's own SQL against what the product wrote. It is shared by the tests of a process that
// ask for the same database and schema, and closed when the first test that asked ends.
func DB(t testing.TB, cfg config.Postgres) *pgxpool.Pool {
	t.Helper()
	key := poolKey{string(cfg.URL), cfg.Schema}
	if p, ok := pools.Load(key); ok {
		return p.(*pgxpool.Pool)
	}
	pc, err := pgxpool.ParseConfig(string(cfg.URL))
	if err != nil {
		t.Fatal("postgres url: cannot parse (value redacted)")
	}
	pc.MaxConns = 4
	if cfg.Schema != "" {
		pc.ConnConfig.RuntimeParams["search_path"] = cfg.Schema
	}
	pc.ConnConfig.RuntimeParams["application_name"] = "spillway-test"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		t.Fatalf("open test pool: %v", err)
	}
	if got, loaded := pools.LoadOrStore(key, p); loaded {
		p.Close()
		return got.(*pgxpool.Pool)
	}
	t.Cleanup(func() {
		pools.Delete(key)
		p.Close()
	})
	return p
}

// Put writes one event through the store's write path and waits until it is searchable.
// created is false when the (id, day) already existed.
func Put(ctx context.Context, es *esstore.Store, e event.Event) (created bool, err error) {
	w, err := writer(es)
	if err != nil {
		return false, err
	}
	out, err := w.Write(ctx, []event.Event{e}, true)
	if err != nil {
		return false, err
	}
	switch o := out[0]; o.Result {
	case event.Created:
		return true, nil
	case event.Duplicate:
		return false, nil
	default:
		return false, fmt.Errorf("event %s: %s (status %d): %s", e.ID, o.Result, o.Status, o.Reason)
	}
}

// Archive opens the archive store on cfg with opts and applies its migrations, as the archiver
// does at start; the store is closed when the test ends.
func Archive(t testing.TB, cfg config.Postgres, opts pgstore.Options) *pgstore.Store {
	t.Helper()
	ctx := Context(t, time.Minute)
	s, err := pgstore.Open(ctx, cfg, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}
