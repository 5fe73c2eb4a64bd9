package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spillway/spillway/internal/archivetest"
	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/event"
)

// pgTool runs a PostgreSQL client program (pg_dump, psql) of the server's version.
func pgTool(t *testing.T, tool string, args ...string) string {
	t.Helper()
	bin := tool
	if dir := os.Getenv("SPILLWAY_PG_BINDIR"); dir != "" {
		bin = filepath.Join(dir, tool)
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", tool, err, out)
	}
	return string(out)
}

// PostgreSQL restored from a dump taken before a retention pass: the archive comes back with its
// cold boundary behind days whose indices were deleted since, and without the events of those
// days archived after the dump. Search refuses those days (503) instead of answering them empty;
// the archiver detects it from Elasticsearch's retention log, re-archives what Elasticsearch
// holds, moves the boundary, and reports exactly the events that are gone.
func TestRestoreFromBeforeRetention(t *testing.T) {
	esCfg, pgCfg := testenv.ES(t), testenv.PG(t)
	es, pg := archivetest.Stores(t, esCfg, pgCfg, "spillway-test")
	ctx := testenv.Context(t, 5*time.Minute)
	today := time.Now().UTC().Truncate(24 * time.Hour)
	dayAgo := func(n int) time.Time { return today.AddDate(0, 0, -n) }
	at := func(id string, ts time.Time) event.Event {
		return event.Event{ID: id, ClientID: "r", Timestamp: ts, IngestedAt: time.Now()}
	}
	var before []event.Event
	for d := 10; d >= 5; d-- {
		for i := range 5 {
			before = append(before, at(fmt.Sprintf("b-%02d-%d", d, i), dayAgo(d).Add(time.Duration(i)*time.Hour)))
		}
	}
	before = append(before, at("b-today", time.Now().Add(-time.Minute)))
	if err := archivetest.Index(ctx, es, before); err != nil {
		t.Fatal(err)
	}
	environ := env(esCfg, pgCfg, "SPILLWAY_INGEST_MAX_PAST_AGE=48h", "SPILLWAY_SEARCH_COLD_TIER=true",
		"SPILLWAY_SEARCH_COLD_BOUNDARY_REFRESH=10ms", "SPILLWAY_SEARCH_QUERY_TIMEOUT=100ms")
	archiveAll := func() {
		t.Helper()
		p := startProc(t, environ, "run")
		archivetest.WaitCaughtUp(t, es, pg, time.Minute)
		p.Term()
		if err := p.Wait(time.Minute); err != nil {
			t.Fatalf("run: %v\n%s", err, p.Logs())
		}
	}
	archiveAll()

	// The backup.
	dump := filepath.Join(t.TempDir(), "archive.sql")
	pgTool(t, "pg_dump", "--schema="+pgCfg.Schema, "--no-owner", "--file="+dump, pgCfg.URL.Value())

	// After the backup: late events on two old days and one today, archived; then retention
	// deletes days −10..−5 (logging each in Elasticsearch first).
	late := []event.Event{at("late-7a", dayAgo(7).Add(90*time.Minute)), at("late-7b", dayAgo(7).Add(91*time.Minute)),
		at("late-9", dayAgo(9).Add(3*time.Hour)), at("late-today", time.Now().Add(-30*time.Second))}
	if err := archivetest.Index(ctx, es, late); err != nil {
		t.Fatal(err)
	}
	archiveAll()
	if code, stdout, stderr := runArchiver(t, environ, "retention", "--older-than", "4d", "--apply"); code != 0 {
		t.Fatalf("retention: exit %d\n%s\n%s", code, stdout, stderr)
	}
	drops, err := es.Drops(ctx)
	if err != nil || len(drops) != 6 || drops[0].Docs != 5 || drops[1].Docs != 5+1 || drops[3].Docs != 5+2 {
		t.Fatalf("retention log: %+v %v", drops, err)
	}

	// The restore.
	conn, err := pgx.Connect(ctx, pgCfg.URL.Value())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{pgCfg.Schema}.Sanitize()+" CASCADE"); err != nil {
		t.Fatal(err)
	}
	pgTool(t, "psql", "--quiet", "--set=ON_ERROR_STOP=1", "--file="+dump, pgCfg.URL.Value())
	if _, ok, err := pg.ColdBoundary(ctx, esCfg.IndexPrefix); err != nil || ok {
		t.Fatalf("the restored archive has a boundary (%v %v): the dump was not from before retention", ok, err)
	}

	// Search, before the archiver repaired: the deleted days are refused, the rest served.
	base := startSearchProc(t, esCfg, pgCfg)
	get := func(q url.Values) (int, []listed) {
		t.Helper()
		res, err := http.Get(base + "/api/v1/events?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var page struct {
			Events []listed `json:"events"`
		}
		_ = json.NewDecoder(res.Body).Decode(&page)
		return res.StatusCode, page.Events
	}
	old := url.Values{"clientId": {"r"}, "to": {dayAgo(4).Format(time.RFC3339)}, "limit": {"1000"}}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("search to refuse the deleted days", func() bool { code, _ := get(old); return code == http.StatusServiceUnavailable })
	if code, evs := get(url.Values{"clientId": {"r"}, "from": {dayAgo(1).Format(time.RFC3339)}}); code != 200 || len(evs) != 2 {
		t.Fatalf("recent days during the restore: %d, %d events, want 200 and 2", code, len(evs))
	}

	// The archiver repairs.
	run := startProc(t, environ, "run")
	defer run.Kill()
	waitFor("the boundary to catch up", func() bool {
		b, ok, _ := pg.ColdBoundary(ctx, esCfg.IndexPrefix)
		return ok && b.Equal(dayAgo(4))
	})
	code, stdout, stderr := runArchiver(t, environ, "status", "--json")
	var st struct {
		Restores []struct {
			RepairedAt time.Time `json:"repaired_at"`
			EventsLost int64     `json:"events_lost"`
			DaysLost   []struct {
				Day              time.Time
				Logged, Archived int64
			} `json:"days_lost"`
		} `json:"restores"`
	}
	if err := json.Unmarshal([]byte(stdout), &st); err != nil || code != 0 || len(st.Restores) != 1 || st.Restores[0].RepairedAt.IsZero() ||
		st.Restores[0].EventsLost != 3 || len(st.Restores[0].DaysLost) != 2 {
		t.Fatalf("status after the repair: exit %d %v %+v\n%s", code, err, st.Restores, stderr)
	}
	if !strings.Contains(run.Logs(), "events of deleted days are gone") {
		t.Fatalf("the archiver did not report the loss:\n%s", run.LogTail(8<<10))
	}
	// What exists is served: the deleted days from PostgreSQL (without the 3 lost events), today
	// re-archived from Elasticsearch (late-today was archived after the dump).
	waitFor("search to serve the deleted days again", func() bool { code, _ := get(old); return code == 200 })
	if _, evs := get(old); len(evs) != 30 {
		t.Fatalf("the deleted days hold %d events after the repair, want the 30 archived before the dump", len(evs))
	}
	archivetest.WaitCaughtUp(t, es, pg, time.Minute)
	if n, err := pg.CountClient(ctx, "r"); err != nil || n != 30+2 {
		t.Fatalf("the archive holds %d events, want 32 (30 + today's 2 re-archived) (%v)", n, err)
	}
}
