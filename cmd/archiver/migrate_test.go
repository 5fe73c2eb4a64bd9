package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/archivetest"
	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/event"
)

// A version-1 archive (one unpartitioned table keyed by id) migrates into day partitions while
// the archiver keeps archiving: `archiver migrate` is killed with SIGKILL halfway, every row
// stays readable exactly once, and a second run resumes, verifies every day by count and id
// digests, and drops the old table. Nothing is lost, nothing doubled.
func TestMigrateV1KilledAndResumed(t *testing.T) {
	esCfg, pgCfg := testenv.ES(t), testenv.PG(t)
	base := time.Date(2025, 10, 1, 0, 0, 0, 0, time.UTC)
	var v1 []testenv.V1Row
	for d := range 6 {
		for i := range 3000 {
			ts := base.Add(time.Duration(d)*24*time.Hour + time.Duration(i)*28*time.Second)
			if i == 2999 {
				ts = base.Add(time.Duration(d+1)*24*time.Hour - time.Microsecond)
			}
			v1 = append(v1, testenv.V1Row{ID: fmt.Sprintf("v1-%d-%04d", d, i), ClientID: fmt.Sprintf("c%d", i%7), Timestamp: ts})
		}
	}
	testenv.V1Archive(t, pgCfg, v1)
	es, pg := archivetest.Stores(t, esCfg, pgCfg, "spillway-test") // applies 004 and 005: events_v1 now
	ctx := testenv.Context(t, 5*time.Minute)
	readable := func() int64 {
		var n int64
		if err := archivetest.DB(t, pg).QueryRow(ctx, "SELECT count(*) FROM events_all WHERE type = 'v1'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := readable(); n != int64(len(v1)) {
		t.Fatalf("readable before: %d of %d", n, len(v1))
	}

	// Events Elasticsearch holds for the same days: one (id, day) that waits in events_v1 (the
	// archiver must skip it), the same id on a later day, and new ids; the archiver runs
	// throughout the migration.
	evs := []event.Event{
		{ID: v1[100].ID, ClientID: "c9", Timestamp: v1[100].Timestamp.Add(time.Second)},
		{ID: v1[100].ID, ClientID: "c9", Timestamp: v1[100].Timestamp.Add(3 * 24 * time.Hour)},
	}
	for i := range 300 {
		evs = append(evs, event.Event{ID: fmt.Sprintf("new-%03d", i), ClientID: "c9", Timestamp: base.Add(time.Duration(i) * 17 * time.Minute)})
	}
	for i := range evs {
		evs[i].IngestedAt = time.Now()
	}
	if err := archivetest.Index(ctx, es, evs); err != nil {
		t.Fatal(err)
	}
	environ := env(esCfg, pgCfg)
	run := startProc(t, environ, "run")
	defer run.Kill()

	// Pruning is refused while the version-1 rows are not in day partitions.
	if code, _, stderr := runArchiver(t, environ, "prune", "--older-than", "1d"); code != 1 || !strings.Contains(stderr, "archiver migrate") {
		t.Fatalf("prune during a pending migration: exit %d: %s", code, stderr)
	}

	m := startProc(t, environ, "migrate", "--batch", "20")
	var moved int64
	for moved < int64(len(v1))/8 { // well into the move, well before its end
		select {
		case <-m.Exited():
			t.Fatalf("migrate finished before it could be killed (%d rows): make the table larger\n%s", len(v1), m.Logs())
		default:
		}
		if err := archivetest.DB(t, pg).QueryRow(ctx, "SELECT rows_moved FROM archive_v1_migration").Scan(&moved); err != nil {
			t.Fatal(err)
		}
	}
	m.Kill()
	// A COMMIT the killed process sent just before SIGKILL still completes on its server
	// backend; that backend exits only once it finds the socket closed. Read the counter after.
	for {
		var backends int
		if err := archivetest.DB(t, pg).QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'spillway-archiver-migrate'").Scan(&backends); err != nil {
			t.Fatal(err)
		}
		if backends == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := archivetest.DB(t, pg).QueryRow(ctx, "SELECT rows_moved FROM archive_v1_migration").Scan(&moved); err != nil {
		t.Fatal(err)
	}
	if moved >= int64(len(v1)) {
		t.Fatalf("killed after the last batch (%d rows moved): nothing to resume", moved)
	}
	if n := readable(); n != int64(len(v1)) {
		t.Fatalf("readable after the kill: %d of %d", n, len(v1))
	}
	code, stdout, stderr := runArchiver(t, environ, "status", "--json")
	var st struct {
		Archive struct {
			V1 *struct {
				RowsMoved int64 `json:"rows_moved"`
				RowsLeft  int64 `json:"rows_left"`
			} `json:"v1_migration"`
		} `json:"archive"`
	}
	if err := json.Unmarshal([]byte(stdout), &st); err != nil || code != 0 || st.Archive.V1 == nil || st.Archive.V1.RowsMoved != moved {
		t.Fatalf("status during the migration: exit %d %v %+v\n%s\n%s", code, err, st.Archive.V1, stdout, stderr)
	}
	t.Logf("killed with %d of %d rows moved", moved, len(v1))

	code, stdout, stderr = runArchiver(t, environ, "migrate", "--batch", "500")
	if code != 0 || !strings.Contains(stdout, "events_v1 dropped") || strings.Count(stdout, "  ok\n") != 6 {
		t.Fatalf("resumed migrate: exit %d\n%s\n%s", code, stdout, stderr)
	}
	archivetest.WaitCaughtUp(t, es, pg, 2*time.Minute)
	run.Term()
	if err := run.Wait(time.Minute); err != nil {
		t.Fatalf("run: %v\n%s", err, run.Logs())
	}

	// Every version-1 row and every Elasticsearch event, each (id, day) exactly once.
	want := map[string]bool{}
	for _, r := range v1 {
		want[archivetest.Key(r.ID, r.Timestamp)] = true
	}
	for _, e := range evs {
		want[archivetest.Key(e.ID, e.Timestamp)] = true
	}
	got := archivetest.PGIDs(t, pg)
	for i := 1; i < len(got); i++ {
		if got[i] == got[i-1] {
			t.Fatalf("%s archived twice", got[i])
		}
	}
	var missing []string
	for k := range want {
		if i := sort.SearchStrings(got, k); i == len(got) || got[i] != k {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 || len(got) != len(want) {
		t.Fatalf("archive holds %d, want %d; missing %d (e.g. %v)", len(got), len(want), len(missing), missing[:min(5, len(missing))])
	}
	var v1Left bool
	if err := archivetest.DB(t, pg).QueryRow(context.Background(), "SELECT to_regclass('events_v1') IS NOT NULL").Scan(&v1Left); err != nil || v1Left {
		t.Fatalf("events_v1 still there: %v %v", v1Left, err)
	}
	if code, stdout, _ := runArchiver(t, environ, "migrate"); code != 0 || !strings.Contains(stdout, "nothing to migrate") {
		t.Fatalf("migrate again: exit %d %s", code, stdout)
	}
}
