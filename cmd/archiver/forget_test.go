package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/archivetest"
	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/event"
)

// `archiver forget` lists by default; with --apply it removes one client's events from both
// stores while the archiver runs and another client keeps posting, records the erasure, and
// leaves verify clean.
func TestForgetClient(t *testing.T) {
	esCfg, pgCfg := testenv.ES(t), testenv.PG(t)
	es, pg := archivetest.Stores(t, esCfg, pgCfg, "spillway-test")
	ctx := testenv.Context(t, 3*time.Minute)
	today := time.Now().UTC().Truncate(24 * time.Hour)
	var evs []event.Event
	for d := 0; d < 3; d++ {
		for i := range 30 {
			ts := today.AddDate(0, 0, -d).Add(time.Duration(i) * 17 * time.Minute)
			if ts.After(time.Now()) {
				ts = time.Now().Add(-time.Duration(i+1) * time.Second)
			}
			evs = append(evs, event.Event{ID: fmt.Sprintf("f-%d-%02d", d, i), ClientID: []string{"gone", "kept"}[i%2], Timestamp: ts, IngestedAt: time.Now()})
		}
	}
	if err := archivetest.Index(ctx, es, evs); err != nil {
		t.Fatal(err)
	}
	// An archived event of "gone" on a day Elasticsearch no longer holds (retention dropped it).
	old := event.Event{ID: "f-old", ClientID: "gone", Timestamp: today.AddDate(0, 0, -60), IngestedAt: time.Now()}
	if _, err := pg.InsertEvent(ctx, old); err != nil {
		t.Fatal(err)
	}
	environ := env(esCfg, pgCfg)
	run := startProc(t, environ, "run")
	defer run.Kill()
	archivetest.WaitCaughtUp(t, es, pg, time.Minute)
	w := archivetest.StartWriter(es, "kept-live", 1) // another client keeps posting throughout

	code, stdout, stderr := runArchiver(t, environ, "forget", "--client-id", "gone")
	if code != 0 || !strings.Contains(stdout, `client "gone": 45 events in Elasticsearch, 46 in PostgreSQL (listing only`) {
		t.Fatalf("listing: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if n, err := es.CountClient(ctx, "gone"); err != nil || n != 45 {
		t.Fatalf("listing deleted something: %d %v", n, err)
	}

	code, stdout, stderr = runArchiver(t, environ, "forget", "--client-id", "gone", "--apply", "--by", "privacy-team", "--json")
	var rep struct {
		ESDeleted   int64 `json:"elasticsearch_deleted"`
		PGDeleted   int64 `json:"postgres_deleted"`
		ESRemaining int64 `json:"elasticsearch_remaining"`
		PGRemaining int64 `json:"postgres_remaining"`
		Erasure     int64 `json:"erasure"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || code != 0 || rep.ESDeleted != 45 || rep.PGDeleted != 46 ||
		rep.ESRemaining != 0 || rep.PGRemaining != 0 || rep.Erasure == 0 {
		t.Fatalf("apply: exit %d %v %+v\n%s\n%s", code, err, rep, stdout, stderr)
	}
	w.Stop(t)
	archivetest.WaitCaughtUp(t, es, pg, time.Minute)
	for name, count := range map[string]func() (int64, error){
		"elasticsearch": func() (int64, error) { return es.CountClient(ctx, "gone") },
		"postgres":      func() (int64, error) { return pg.CountClient(ctx, "gone") },
	} {
		if n, err := count(); err != nil || n != 0 {
			t.Fatalf("%s still holds %d events of the forgotten client (%v)", name, n, err)
		}
	}
	if n, err := pg.CountClient(ctx, "kept"); err != nil || n != 45 {
		t.Fatalf("the other client lost events: %d of 45 (%v)", n, err)
	}
	erasures, err := pg.Erasures(ctx)
	if err != nil || len(erasures) != 1 || erasures[0].ClientID != "gone" || erasures[0].RequestedBy != "privacy-team" ||
		erasures[0].FinishedAt.IsZero() || erasures[0].ESDeleted != 45 || erasures[0].PGDeleted != 46 {
		t.Fatalf("erasure record: %+v %v", erasures, err)
	}
	// Both stores agree on the days Elasticsearch holds, ids and digests included.
	if code, stdout, stderr := runArchiver(t, environ, "verify", "--from", today.AddDate(0, 0, -2).Format(time.DateOnly), "--to", "now"); code != 0 || !strings.Contains(stdout, "OK: both stores agree") {
		t.Fatalf("verify after forget: exit %d\n%s\n%s", code, stdout, stderr)
	}
}
