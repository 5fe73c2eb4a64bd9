package pgstore_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/pgstore"
)

// v1Store builds a version-1 archive with rows on several days, then opens it with the current
// schema (migration 004 renames its table events_v1).
func v1Store(t *testing.T, rows []testenv.V1Row) (*pgstore.Store, config.Postgres) {
	t.Helper()
	cfg := testenv.PG(t)
	testenv.V1Archive(t, cfg, rows)
	return testenv.Archive(t, cfg, pgstore.Options{ApplicationName: "spillway-test"}), cfg
}

func v1Rows(days, perDay int) []testenv.V1Row {
	base := time.Date(2025, 11, 1, 0, 0, 0, 0, time.UTC)
	var rows []testenv.V1Row
	for d := range days {
		for i := range perDay {
			ts := base.Add(time.Duration(d)*24*time.Hour + time.Duration(i)*time.Minute)
			if i == perDay-1 {
				ts = base.Add(time.Duration(d+1)*24*time.Hour - time.Microsecond) // 23:59:59.999999
			}
			rows = append(rows, testenv.V1Row{ID: fmt.Sprintf("v1-%d-%03d", d, i), ClientID: fmt.Sprintf("client-%d", i%3), Timestamp: ts})
		}
	}
	return rows
}

// While a version-1 archive is moved, every row is readable exactly once (from events_v1 until
// its batch moves, from the partitions after), writers skip an (id, day) still waiting there,
// and the end compares every day by count and id digests before dropping events_v1.
func TestV1MoveKeepsEveryRowReadableOnce(t *testing.T) {
	rows := v1Rows(5, 40)
	s, _ := v1Store(t, rows)
	ctx := testenv.Context(t, 2*time.Minute)
	st, ok, err := s.V1(ctx)
	if err != nil || !ok || st.RowsLeft != int64(len(rows)) || st.RowsMoved != 0 {
		t.Fatalf("v1 state %+v %v %v", st, ok, err)
	}
	if n := countRows(t, s, ""); n != int64(len(rows)) {
		t.Fatalf("readable before the move: %d of %d", n, len(rows))
	}
	// The archiver writes meanwhile: one (id, day) still waiting in events_v1 (skipped), the
	// same id on another day (a new event), and a new id.
	waiting := rows[150] // day 3
	res, err := s.CopyEvents(ctx, pgstore.OriginBackfill, []event.Event{
		row(waiting.ID, waiting.Timestamp.Add(time.Second)),
		row(waiting.ID, waiting.Timestamp.Add(30*24*time.Hour)),
		row("new-1", waiting.Timestamp),
	})
	if err != nil || res.Inserted != 2 {
		t.Fatalf("writes during the move: %+v %v, want 2 inserted", res, err)
	}
	total := int64(len(rows) + 2)
	for {
		moved, inserted, err := s.MoveV1(ctx, 37)
		if err != nil {
			t.Fatal(err)
		}
		if moved != inserted {
			t.Fatalf("moved %d, inserted %d: a waiting (id, day) was in the partitions already", moved, inserted)
		}
		if n := countRows(t, s, ""); n != total {
			t.Fatalf("readable during the move: %d, want %d", n, total)
		}
		if moved == 0 {
			break
		}
	}
	days, err := s.V1Days(ctx)
	if err != nil || len(days) != 5 {
		t.Fatalf("days %v %v", days, err)
	}
	for _, d := range days {
		c, err := s.CompareV1Day(ctx, d)
		if err != nil || !c.OK() || c.V1Rows != 40 {
			t.Fatalf("%s: %+v %v", d, c, err)
		}
	}
	// A row missing from the partitions shows in its day's comparison.
	if _, err := s.Pool().Exec(ctx, "DELETE FROM events WHERE id = $1", rows[10].ID); err != nil {
		t.Fatal(err)
	}
	if c, err := s.CompareV1Day(ctx, rows[10].Timestamp); err != nil || c.OK() || c.MovedRows != 39 {
		t.Fatalf("after deleting a moved row: %+v %v", c, err)
	}
	if _, err := s.Pool().Exec(ctx, "INSERT INTO events SELECT id, client_id, type, ts, ingested_at, payload FROM events_v1 WHERE id = $1", rows[10].ID); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishV1(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.V1(ctx); err != nil || ok {
		t.Fatalf("after finish: pending %v %v", ok, err)
	}
	if n := countRows(t, s, ""); n != total {
		t.Fatalf("after finish: %d rows, want %d", n, total)
	}
	if n := countRows(t, s, "WHERE id = $1", waiting.ID); n != 2 {
		t.Fatalf("%s: %d rows, want 2 (two days)", waiting.ID, n)
	}
}

func TestV1FinishRefusesUnmovedRows(t *testing.T) {
	s, _ := v1Store(t, v1Rows(2, 5))
	ctx := testenv.Context(t, time.Minute)
	if _, _, err := s.MoveV1(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishV1(ctx); err == nil {
		t.Fatal("finish with rows left: no error")
	}
	if n := countRows(t, s, ""); n != 10 {
		t.Fatalf("%d rows readable, want 10", n)
	}
}

// A fresh install has no version-1 table to move.
func TestNoV1OnFreshSchema(t *testing.T) {
	s := migrated(t)
	if _, ok, err := s.V1(testenv.Context(t, time.Minute)); err != nil || ok {
		t.Fatalf("v1 pending on a fresh schema: %v %v", ok, err)
	}
}
