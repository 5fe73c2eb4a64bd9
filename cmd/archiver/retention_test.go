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

func TestParseAge(t *testing.T) {
	for in, want := range map[string]time.Duration{"45d": 45 * 24 * time.Hour, "1080h": 1080 * time.Hour, "90m": 90 * time.Minute} {
		if got, err := parseAge(in); err != nil || got != want {
			t.Errorf("%s: %s %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "d", "-3d", "0d", "3w", "-1h", "0s", "1.5d"} {
		if _, err := parseAge(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// `archiver retention` lists by default, refuses unsafe horizons and, with --apply, drops the
// verified indices up to the first one holding an unarchived event, which it keeps with
// everything after it, exiting 1.
func TestRetentionCommand(t *testing.T) {
	esCfg, pgCfg := testenv.ES(t), testenv.PG(t)
	es, pg := archivetest.Stores(t, esCfg, pgCfg, "spillway-test")
	ctx := testenv.Context(t, 3*time.Minute)
	today := time.Now().UTC().Truncate(24 * time.Hour)
	dayAgo := func(n int) time.Time { return today.AddDate(0, 0, -n) }
	var evs []event.Event
	for n := 10; n >= 5; n-- {
		for i := 0; i < 5; i++ {
			ts := dayAgo(n).Add(time.Duration(i) * 3 * time.Hour)
			evs = append(evs, event.Event{ID: fmt.Sprintf("r%02d-%d", n, i), ClientID: "c", Timestamp: ts, IngestedAt: ts})
		}
	}
	if err := archivetest.Index(ctx, es, evs); err != nil {
		t.Fatal(err)
	}
	environ := env(esCfg, pgCfg, "SPILLWAY_INGEST_MAX_PAST_AGE=48h", "SPILLWAY_SEARCH_COLD_BOUNDARY_REFRESH=10ms",
		"SPILLWAY_SEARCH_QUERY_TIMEOUT=100ms")
	p := startProc(t, environ, "run")
	archivetest.WaitCaughtUp(t, es, pg, time.Minute)
	p.Term()
	if err := p.Wait(time.Minute); err != nil {
		t.Fatalf("run: %v\n%s", err, p.Logs())
	}
	// Unarchived: indexed into day −8 after the archiver stopped.
	if _, err := testenv.Put(ctx, es, event.Event{ID: "late", ClientID: "c", Timestamp: dayAgo(8).Add(time.Hour), IngestedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	indices := func() []string {
		idx, err := es.Indices(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, i := range idx {
			names = append(names, i.Name)
		}
		return names
	}
	all := indices()
	if len(all) != 6 {
		t.Fatalf("indices %v", all)
	}

	// Unsafe: inside ingest.max_past_age + 24h (72h here), or --apply with search.cold_tier off.
	for _, tc := range []struct {
		environ []string
		args    []string
		want    string
	}{
		{environ, []string{"retention", "--older-than", "3d"}, "ingest.max_past_age"},
		{environ, []string{"retention", "--older-than", "4d", "--apply"}, "search.cold_tier"},
		{environ, []string{"retention"}, "--older-than"},
		{environ, []string{"retention", "--older-than", "soon"}, "--older-than"},
		{environ, []string{"verify", "--older-than", "4d"}, "unknown flag: --older-than"},
	} {
		if code, _, stderr := runArchiver(t, tc.environ, tc.args...); code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, want 2 naming %s: %s", tc.args, code, tc.want, stderr)
		}
	}
	if got := indices(); len(got) != 6 {
		t.Fatalf("a refused command dropped indices: %v", got)
	}

	// Listing (the default): what would happen, nothing done, exit 1 for the index it would keep.
	code, stdout, stderr := runArchiver(t, environ, "retention", "--older-than", "4d", "--json")
	var rep struct {
		Applied bool `json:"applied"`
		Indices []struct {
			Index, Action string
		} `json:"indices"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || code != 1 || rep.Applied || len(rep.Indices) != 6 {
		t.Fatalf("listing: exit %d %v\n%s\n%s", code, err, stdout, stderr)
	}
	wantActions := []string{"drop", "drop", "KEPT", "skipped", "skipped", "skipped"}
	for i, it := range rep.Indices {
		if it.Index != all[i] || it.Action != wantActions[i] {
			t.Fatalf("listing: %+v, want actions %v", rep.Indices, wantActions)
		}
	}
	if got := indices(); len(got) != 6 {
		t.Fatalf("listing dropped indices: %v", got)
	}

	// Applied: days −10 and −9 go, the boundary moves to the start of day −8, the rest stays.
	applyEnv := append(environ, "SPILLWAY_SEARCH_COLD_TIER=true")
	code, stdout, stderr = runArchiver(t, applyEnv, "retention", "--older-than", "4d", "--apply")
	if code != 1 || !strings.Contains(stdout, "dropped") || !strings.Contains(stdout, "KEPT") || !strings.Contains(stderr, "kept 1 index") {
		t.Fatalf("apply: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if got := indices(); strings.Join(got, ",") != strings.Join(all[2:], ",") {
		t.Fatalf("after apply: %v, want %v", got, all[2:])
	}
	if b, ok, err := pg.ColdBoundary(ctx, esCfg.IndexPrefix); err != nil || !ok || !b.Equal(dayAgo(8)) {
		t.Fatalf("boundary %s %v %v, want %s", b, ok, err, dayAgo(8))
	}
	for _, e := range evs[:10] {
		if _, err := pg.Get(ctx, e.ID, time.Time{}); err != nil {
			t.Fatalf("dropped event %s not in PostgreSQL: %v", e.ID, err)
		}
	}

	// Once archived, the rest goes; verify over the dropped days says why rows look extra.
	p = startProc(t, environ, "run")
	archivetest.WaitCaughtUp(t, es, pg, time.Minute)
	p.Term()
	if err := p.Wait(time.Minute); err != nil {
		t.Fatalf("run: %v\n%s", err, p.Logs())
	}
	if code, stdout, stderr = runArchiver(t, applyEnv, "retention", "--older-than", "4d", "--apply"); code != 0 {
		t.Fatalf("second apply: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if got := indices(); len(got) != 0 {
		t.Fatalf("after second apply: %v", got)
	}
	if _, _, stderr = runArchiver(t, environ, "verify", "--from", dayAgo(10).Format(time.DateOnly), "--to", dayAgo(4).Format(time.DateOnly)); !strings.Contains(stderr, "below the cold boundary") {
		t.Fatalf("verify below the boundary: %s", stderr)
	}

	// Archive retention: the partitions of days −10..−7 are past a 6-day horizon and below the
	// boundary (start of day −4), but Elasticsearch holds day −9 again (a late event recreated
	// its index): that day stays, served from there.
	if _, err := testenv.Put(ctx, es, event.Event{ID: "revenant", ClientID: "c", Timestamp: dayAgo(9).Add(time.Hour), IngestedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	prune := func(args ...string) (int, []struct{ Partition, Action, Reason string }, string) {
		t.Helper()
		code, stdout, stderr := runArchiver(t, environ, append([]string{"prune", "--older-than", "6d", "--json"}, args...)...)
		var rep struct {
			Partitions []struct{ Partition, Action, Reason string } `json:"partitions"`
		}
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
			t.Fatalf("prune %v: exit %d %v\n%s\n%s", args, code, err, stdout, stderr)
		}
		return code, rep.Partitions, stdout + stderr
	}
	actions := func(parts []struct{ Partition, Action, Reason string }) string {
		var out []string
		for _, p := range parts {
			out = append(out, p.Partition+":"+p.Action)
		}
		return strings.Join(out, " ")
	}
	name := func(n int) string { return "events_p" + dayAgo(n).Format("20060102") }
	listed := fmt.Sprintf("%s:drop %s:kept %s:drop %s:drop", name(10), name(9), name(8), name(7))
	if code, parts, out := prune(); code != 0 || actions(parts) != listed || !strings.Contains(parts[1].Reason, "Elasticsearch still holds") {
		t.Fatalf("prune listing: exit %d %s, want %s\n%s", code, actions(parts), listed, out)
	}
	if _, err := pg.Get(ctx, "r10-0", time.Time{}); err != nil {
		t.Fatalf("listing dropped a partition: %v", err)
	}
	applied := fmt.Sprintf("%s:dropped %s:kept %s:dropped %s:dropped", name(10), name(9), name(8), name(7))
	if code, parts, out := prune("--apply"); code != 0 || actions(parts) != applied {
		t.Fatalf("prune --apply: exit %d %s, want %s\n%s", code, actions(parts), applied, out)
	}
	// Reads below the horizon return what exists: day −9's rows, nothing of the dropped days.
	if _, err := pg.Get(ctx, "r10-0", time.Time{}); err == nil {
		t.Fatal("an event of a dropped partition is still readable")
	}
	if _, err := pg.Get(ctx, "r09-0", time.Time{}); err != nil {
		t.Fatalf("an event of the kept partition: %v", err)
	}
	code, stdout, stderr = runArchiver(t, environ, "status", "--json")
	var st struct {
		Archive struct {
			EarliestDay *time.Time `json:"earliest_day"`
		} `json:"archive"`
	}
	if err := json.Unmarshal([]byte(stdout), &st); err != nil || code != 0 || st.Archive.EarliestDay == nil || !st.Archive.EarliestDay.Equal(dayAgo(9)) {
		t.Fatalf("status after prune: exit %d %v %+v\n%s", code, err, st.Archive, stderr)
	}
	if _, stdout, _ = runArchiver(t, environ, "status"); !strings.Contains(stdout, "earliest day held "+dayAgo(9).Format(time.DateOnly)) {
		t.Fatalf("status table: %s", stdout)
	}
}
