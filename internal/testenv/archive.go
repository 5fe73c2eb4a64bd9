package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spillway/spillway/mappings"
	"github.com/spillway/spillway/pkg/config"
)

// V1Archive turns the (empty) schema of cfg into a version-1 archive, the schema of deployments
// from before the day partitions: the migrations up to 003, with events unpartitioned and keyed
// by id alone. rows are inserted into it (id, client id, timestamp; type and payload derived).
// Migrate then applies the rest and leaves events_v1 for `archiver migrate` to move.
func V1Archive(t testing.TB, cfg config.Postgres, rows []V1Row) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, cfg.URL.Value())
	if err != nil {
		Unavailable(t, "PostgreSQL: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SET search_path = "+pgx.Identifier{cfg.Schema}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	for _, m := range mappings.PostgresMigrations() {
		if m.Name >= "004" {
			break
		}
		if _, err := conn.Exec(ctx, m.SQL); err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		if _, err := conn.Exec(ctx, "INSERT INTO schema_migrations (name) VALUES ($1)", m.Name); err != nil {
			t.Fatal(err)
		}
	}
	_, err = conn.CopyFrom(ctx, pgx.Identifier{"events"}, []string{"id", "client_id", "type", "ts", "ingested_at", "payload"},
		pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
			r := rows[i]
			return []any{r.ID, r.ClientID, "v1", r.Timestamp, r.Timestamp, []byte(`{"v1":true,"id":"` + r.ID + `"}`)}, nil
		}))
	if err != nil {
		t.Fatalf("v1 rows: %v", err)
	}
}

// V1Row is one event of a version-1 archive.
type V1Row struct {
	ID, ClientID string
	Timestamp    time.Time
}
