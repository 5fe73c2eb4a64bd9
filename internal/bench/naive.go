// Package bench holds the baselines Spillway is measured against in the same run: the naive
// design its users run today (one INSERT per event through a connection pool, into a plain
// table of its own) and the raw capacity of Elasticsearch's _bulk endpoint.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spillway/spillway/pkg/event"
)

// Inserter writes one event with one statement (NaiveTable.InsertEvent).
type Inserter interface {
	InsertEvent(ctx context.Context, e event.Event) (bool, error)
}

// Exec runs one SQL statement; cmd/loadgen adapts a pgx pool's Exec (this package does not
// import the PostgreSQL driver).
type Exec func(ctx context.Context, sql string, args ...any) (rowsAffected int64, err error)

// NaiveTable is the users' table as they run it today: one plain table with a primary key on
// id and an index for "all events of client X by time", in a schema of its own. It is not
// Spillway's archive (one partition per UTC day, identity (id, day), two indexes per
// partition, lz4 payloads, a partition check before every insert): the naive design is
// measured as the users' design, not as a variant of Spillway's.
type NaiveTable struct{ exec Exec }

// naiveDDL creates the users' table in the schema (%s: the quoted schema name).
const naiveDDL = `CREATE SCHEMA IF NOT EXISTS %[1]s;
CREATE TABLE IF NOT EXISTS %[1]s.naive_events (
    id          text PRIMARY KEY,
    client_id   text NOT NULL,
    type        text,
    ts          timestamptz NOT NULL,
    ingested_at timestamptz NOT NULL,
    payload     jsonb
);
CREATE INDEX IF NOT EXISTS naive_events_client_ts ON %[1]s.naive_events (client_id, ts)`

// OpenNaiveTable creates the table in schema if it is missing; exec's connections must have
// schema on their search_path.
func OpenNaiveTable(ctx context.Context, exec Exec, schema string) (*NaiveTable, error) {
	quoted := `"` + strings.ReplaceAll(schema, `"`, `""`) + `"`
	for _, stmt := range strings.Split(fmt.Sprintf(naiveDDL, quoted), ";\n") {
		if _, err := exec(ctx, stmt); err != nil {
			return nil, fmt.Errorf("naive table: %w", err)
		}
	}
	return &NaiveTable{exec: exec}, nil
}

// InsertEvent writes one event with one INSERT, committed on its own; an id already stored is
// not an error (inserted is false), so a retried request is harmless.
func (n *NaiveTable) InsertEvent(ctx context.Context, e event.Event) (inserted bool, err error) {
	var payload any
	if len(e.Payload) > 0 {
		payload = string(e.Payload)
	}
	var typ any
	if e.Type != "" {
		typ = e.Type
	}
	rows, err := n.exec(ctx, `INSERT INTO naive_events (id, client_id, type, ts, ingested_at, payload)
		VALUES ($1, $2, $3, $4, $5, $6::jsonb) ON CONFLICT (id) DO NOTHING`,
		e.ID, e.ClientID, typ, e.Timestamp, e.IngestedAt, payload)
	if err != nil {
		return false, fmt.Errorf("insert event: %w", err)
	}
	return rows == 1, nil
}

// NaiveHandler is the users' current system reduced to its essence: every POSTed event is
// INSERTed with its own statement through a pool, and the request waits for it. It accepts
// the same single-event JSON body as ingest.
func NaiveHandler(db Inserter, timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var in struct {
			ID        string          `json:"id"`
			ClientID  string          `json:"clientId"`
			Type      string          `json:"type"`
			Timestamp time.Time       `json:"timestamp"`
			Payload   json.RawMessage `json:"payload"`
		}
		if err := json.Unmarshal(body, &in); err != nil || in.ClientID == "" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if in.ID == "" {
			in.ID = event.NewID()
		}
		now := time.Now()
		if in.Timestamp.IsZero() {
			in.Timestamp = now
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		_, err = db.InsertEvent(ctx, event.Event{ID: in.ID, ClientID: in.ClientID, Type: in.Type, Timestamp: in.Timestamp, IngestedAt: now, Payload: in.Payload})
		if err != nil {
			// What the users saw: the pool ran dry, requests timed out.
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"accepted":1}`))
	})
}
