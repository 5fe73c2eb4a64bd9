package faults

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/archivetest"
	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/event"
)

// The check's PostgreSQL duplicate count must be able to fail. The archive's key forbids the
// double row it looks for, so the proof is a table without the key, holding the archive's own
// rows: an event written twice on one day is found; the same id on another day is another
// event of Elasticsearch's (another daily index), not a duplicate here.
func TestPGDuplicatesFindsADoubleRow(t *testing.T) {
	_, pg := archivetest.Stores(t, testenv.ES(t), testenv.PG(t), "spillway-faults")
	ctx := testenv.Context(t, time.Minute)
	ts := time.Date(2026, 5, 1, 23, 59, 0, 0, time.UTC)
	for _, id := range []string{"once", "twice", "two-days"} {
		e := event.Event{ID: id, ClientID: "c", Type: "t", Timestamp: ts, IngestedAt: ts, Payload: json.RawMessage(`{}`)}
		if _, err := pg.InsertEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []string{
		`CREATE TABLE events_unkeyed (LIKE events)`, // columns only: no key, no index
		`INSERT INTO events_unkeyed SELECT * FROM events`,
		`INSERT INTO events_unkeyed SELECT * FROM events WHERE id = 'twice'`,
		`INSERT INTO events_unkeyed SELECT * FROM events WHERE id = 'twice'`,
		`INSERT INTO events_unkeyed SELECT * FROM events WHERE id = 'two-days'`,
		`UPDATE events_unkeyed SET ts = ts + interval '1 minute' WHERE ctid = (SELECT min(ctid) FROM events_unkeyed WHERE id = 'two-days')`,
	} {
		if _, err := archivetest.DB(t, pg).Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if got, err := pgDuplicates(ctx, archivetest.DB(t, pg), "events"); err != nil || len(got) != 0 {
		t.Fatalf("the archive: %v %v, want none", got, err)
	}
	got, err := pgDuplicates(ctx, archivetest.DB(t, pg), "events_unkeyed")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"twice@2026-05-01×3"}; !slices.Equal(got, want) {
		t.Fatalf("duplicates %v, want %v", got, want)
	}
}
