package pgstore_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/mappings"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/pgstore"
)

func TestMigrationsAreNumberedFiles(t *testing.T) {
	ms := mappings.PostgresMigrations()
	if len(ms) == 0 || ms[0].Name != "001_events.sql" {
		t.Fatalf("migrations %v", ms)
	}
	for i, m := range ms {
		if len(m.Name) < 5 || m.Name[3] != '_' || m.SQL == "" {
			t.Errorf("migration %d: bad name or empty: %q", i, m.Name)
		}
	}
}

func TestMigrateWriteRead(t *testing.T) {
	cfg := testenv.PG(t)
	ctx := testenv.Context(t, time.Minute)
	s, err := pgstore.Open(ctx, cfg, pgstore.Options{ApplicationName: "spillway-test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 2; i++ { // idempotent
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CheckSchema(ctx); err != nil {
		t.Fatal(err)
	}
	// The schema has what the archive needs: events partitioned by ts, with the client/time and
	// time indexes that every partition inherits (each partition's UNIQUE (id) is checked in
	// partition_test.go).
	var n int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND tablename = 'events'
		AND indexname IN ('events_ts_id', 'events_client_ts_id')`, cfg.Schema).Scan(&n); err != nil || n != 2 {
		t.Fatalf("indexes: %d %v", n, err)
	}

	ts := time.Date(2026, 5, 6, 7, 8, 9, 123456789, time.UTC)
	e := event.Event{ID: "row-1", ClientID: "client-1'; DROP TABLE events; --", Timestamp: ts, IngestedAt: ts,
		Payload: json.RawMessage(`{"n":null,"s":"ü\"x","deep":{"a":[1,2.5,true]}}`)}
	ok, err := s.InsertEvent(ctx, e)
	if err != nil || !ok {
		t.Fatalf("insert: %v %v", ok, err)
	}
	ok, err = s.InsertEvent(ctx, e)
	if err != nil || ok {
		t.Fatalf("second insert: inserted=%v err=%v, want ignored", ok, err)
	}
	got, err := s.Get(ctx, "row-1", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got.ClientID != e.ClientID || got.Type != "" || !got.Timestamp.Equal(ts.Truncate(time.Microsecond)) {
		t.Fatalf("got %+v", got)
	}
	var a, b any
	_ = json.Unmarshal(got.Payload, &a)
	_ = json.Unmarshal(e.Payload, &b)
	if ja, _ := json.Marshal(a); string(ja) != func() string { jb, _ := json.Marshal(b); return string(jb) }() {
		t.Fatalf("payload %s, want %s", got.Payload, e.Payload)
	}
	if _, err := s.Get(ctx, "nope", time.Time{}); !errors.Is(err, event.ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
}

func TestPoolIsCapped(t *testing.T) {
	cfg := testenv.PG(t)
	cfg.MaxConns = 2
	ctx := testenv.Context(t, time.Minute)
	s, err := pgstore.Open(ctx, cfg, pgstore.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.MaxConns() != 2 {
		t.Fatalf("MaxConns = %d", s.MaxConns())
	}
	c1, err := s.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := s.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	short := testenv.Context(t, 300*time.Millisecond)
	if c3, err := s.Pool().Acquire(short); err == nil {
		c3.Release()
		t.Fatal("acquired a third connection from a pool capped at 2")
	}
	c1.Release()
	c2.Release()
}

func TestUnreachableIsUnavailable(t *testing.T) {
	cfg := testenv.DefaultPG("postgres://x:y@127.0.0.1:1/db?sslmode=disable", "public")
	ctx := testenv.Context(t, 10*time.Second)
	s, err := pgstore.Open(ctx, cfg, pgstore.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Ping(ctx); !errors.Is(err, event.ErrUnavailable) {
		t.Fatalf("ping: %v", err)
	}
}
