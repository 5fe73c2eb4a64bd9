package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spillway/spillway/internal/archivetest"
	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/event"
)

// startSearchProc runs the search service with the cold tier on the test's prefix and schema.
func startSearchProc(t *testing.T, esCfg config.Elasticsearch, pgCfg config.Postgres) string {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	environ := testenv.Env(append(append(testenv.ESEnv(esCfg), testenv.PGEnv(pgCfg)...), "SPILLWAY_HTTP_ADDR="+addr,
		"SPILLWAY_SEARCH_COLD_TIER=true", "SPILLWAY_SEARCH_COLD_BOUNDARY_REFRESH=50ms", "SPILLWAY_INGEST_MAX_PAST_AGE=48h")...)
	p := testenv.StartProcess(t, "search", testenv.Build(t, "cmd/search"), environ)
	p.WaitHTTP(t, "http://"+addr+"/readyz", 2*time.Minute)
	return "http://" + addr
}

type listed struct {
	ID        string `json:"id"`
	Timestamp string `json:"timestamp"`
	Type      string `json:"type"`
}

// listAll follows nextCursor to the end of a client's events, oldest first.
func listAll(t *testing.T, base, client string) []listed {
	t.Helper()
	var out []listed
	q := url.Values{"clientId": {client}, "limit": {"1000"}, "order": {"asc"}}
	for {
		res, err := http.Get(base + "/api/v1/events?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("list %s: %d %s", client, res.StatusCode, b)
		}
		var page struct {
			Events     []listed `json:"events"`
			NextCursor string   `json:"nextCursor"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			t.Fatal(err)
		}
		out = append(out, page.Events...)
		if page.NextCursor == "" {
			return out
		}
		q.Set("cursor", page.NextCursor)
	}
}

// `archiver import` from NDJSON: an invalid record stops the import before anything is written,
// naming its line; a valid file is imported, killed halfway and resumed, verified by day, and made
// readable through search — including a day Elasticsearch still holds, whose archived and imported
// events are then served together from PostgreSQL, each once and in order.
func TestImportFileKilledResumedReadable(t *testing.T) {
	esCfg, pgCfg := testenv.ES(t), testenv.PG(t)
	es, pg := archivetest.Stores(t, esCfg, pgCfg, "spillway-test")
	ctx := testenv.Context(t, 5*time.Minute)
	today := time.Now().UTC().Truncate(24 * time.Hour)
	dayAgo := func(n int) time.Time { return today.AddDate(0, 0, -n) }
	// With ingest.max_past_age 48h the import horizon is the start of day −3. Elasticsearch holds
	// day −5 (archived) and day −1.
	var live []event.Event
	for _, d := range []int{5, 1} {
		for i := range 20 {
			ts := dayAgo(d).Add(time.Duration(i) * time.Hour)
			live = append(live, event.Event{ID: fmt.Sprintf("live-%d-%02d", d, i), ClientID: "hist", Type: "live", Timestamp: ts, IngestedAt: time.Now()})
		}
	}
	if err := archivetest.Index(ctx, es, live); err != nil {
		t.Fatal(err)
	}
	environ := env(esCfg, pgCfg, "SPILLWAY_INGEST_MAX_PAST_AGE=48h", "SPILLWAY_SEARCH_COLD_TIER=true")
	run := startProc(t, environ, "run")
	archivetest.WaitCaughtUp(t, es, pg, time.Minute)
	run.Term()
	if err := run.Wait(time.Minute); err != nil {
		t.Fatalf("run: %v\n%s", err, run.Logs())
	}

	dir := t.TempDir()
	write := func(name string, lines []string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// History: days −40 to −5, 1,000 events a day; one id without an id field per day; on day
	// −5 an id Elasticsearch also has (the same event: skipped) besides new ones.
	var lines []string
	for d := 40; d >= 5; d-- {
		for i := range 1000 {
			ts := dayAgo(d).Add(time.Duration(i) * 80 * time.Second)
			obj := map[string]any{"id": fmt.Sprintf("h-%02d-%04d", d, i), "clientId": []string{"hist", "other"}[i%2], "type": "old",
				"timestamp": ts.Format(time.RFC3339Nano), "payload": map[string]any{"n": i, "day": d}}
			if i == 7 {
				delete(obj, "id")
			}
			if d == 5 && i == 0 {
				obj["id"], obj["timestamp"] = "live-5-00", dayAgo(5).Format(time.RFC3339Nano)
			}
			b, _ := json.Marshal(obj)
			lines = append(lines, string(b))
		}
	}
	bad := append([]string{}, lines[:3]...)
	bad = append(bad, `{"clientId":"x","timestamp":"`+dayAgo(10).Format(time.RFC3339)+`","payload":{"a":1,"a":2}}`, // line 4
		`{"clientId":"x","timestamp":"`+dayAgo(1).Format(time.RFC3339)+`"}`, // line 5: younger than the horizon
		`not json`) // line 6
	badFile := write("bad.ndjson", bad)
	code, stdout, stderr := runArchiver(t, environ, "import", "--file", badFile)
	for _, want := range []string{"3 of 6 records invalid; nothing was imported", "(line 4): payload", "(line 5): timestamp: is not before the import horizon", "(line 6)"} {
		if code != 1 || !strings.Contains(stderr, want) {
			t.Fatalf("invalid file: exit %d, want 1 and %q:\n%s\n%s", code, want, stdout, stderr)
		}
	}
	var rows int64
	if err := archivetest.DB(t, pg).QueryRow(ctx, "SELECT count(*) FROM events_all WHERE type = 'old'").Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("the invalid import wrote %d rows (%v)", rows, err)
	}

	file := write("history.ndjson", lines)
	p := startProc(t, environ, "import", "--file", file, "--batch", "50")
	var pos int64
	for pos < int64(len(lines))/5 {
		select {
		case <-p.Exited():
			t.Fatalf("import finished before it could be killed:\n%s", p.Logs())
		default:
		}
		_ = archivetest.DB(t, pg).QueryRow(ctx, "SELECT coalesce(max(position), 0) FROM archive_imports").Scan(&pos)
	}
	p.Kill()
	if err := archivetest.DB(t, pg).QueryRow(ctx, "SELECT max(position) FROM archive_imports").Scan(&pos); err != nil || pos >= int64(len(lines)) {
		t.Fatalf("killed at %d of %d (%v)", pos, len(lines), err)
	}
	t.Logf("killed at record %d of %d", pos, len(lines))
	code, stdout, stderr = runArchiver(t, environ, "import", "--file", file, "--batch", "500")
	if code != 0 || strings.Count(stdout, "  ok\n") != 36 || !strings.Contains(stdout, "imported: 36000 records") {
		t.Fatalf("resumed import: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, fmt.Sprintf(`"resumed_at":%d`, pos)) {
		t.Fatalf("the second run did not resume at %d:\n%s", pos, stderr)
	}
	if b, ok, err := pg.ColdBoundary(ctx, esCfg.IndexPrefix); err != nil || !ok || !b.Equal(dayAgo(4)) {
		t.Fatalf("boundary %s %v %v, want the end of day −5 (%s)", b, ok, err, dayAgo(4))
	}
	// Each imported (id, day) once, the shared one once, the id-less ones under derived ids.
	if err := archivetest.DB(t, pg).QueryRow(ctx, "SELECT count(*) FROM events_all WHERE type = 'old' OR id LIKE 'live-5-%'").Scan(&rows); err != nil || rows != 36000-1+20 {
		t.Fatalf("archive holds %d imported and day −5 rows, want %d (%v)", rows, 36000-1+20, err)
	}
	if err := archivetest.DB(t, pg).QueryRow(ctx, "SELECT count(*) FROM events_all WHERE id LIKE 'imp-%'").Scan(&rows); err != nil || rows != 36 {
		t.Fatalf("%d id-less records archived under derived ids, want 36 (%v)", rows, err)
	}
	code, _, stderr = runArchiver(t, environ, "import", "--file", file)
	if code != 1 || !strings.Contains(stderr, "already imported") {
		t.Fatalf("a second import of the same file: exit %d\n%s", code, stderr)
	}

	// Search serves days −40..−5 from PostgreSQL (imported and archived events together) and
	// day −1 from Elasticsearch: every event of the client once, in order.
	base := startSearchProc(t, esCfg, pgCfg)
	got := listAll(t, base, "hist")
	// 18,000 imported events of hist (the one shared with Elasticsearch among them), day −5's 19
	// others and day −1's 20.
	want := 18000 + 19 + 20
	if len(got) != want {
		t.Fatalf("listed %d events of hist, want %d", len(got), want)
	}
	if !sort.SliceIsSorted(got, func(i, j int) bool {
		return got[i].Timestamp < got[j].Timestamp || got[i].Timestamp == got[j].Timestamp && got[i].ID < got[j].ID
	}) {
		t.Fatal("events out of (timestamp, id) order")
	}
	seen := map[string]bool{}
	for _, e := range got {
		k := e.ID + "@" + e.Timestamp[:10]
		if seen[k] {
			t.Fatalf("%s listed twice", k)
		}
		seen[k] = true
	}
}

// `archiver import --table` reads the users' own table through a column mapping: a uuid id, a
// timestamp without time zone (read as UTC), a jsonb payload, and a row without an id.
func TestImportTable(t *testing.T) {
	esCfg, pgCfg := testenv.ES(t), testenv.PG(t)
	_, pg := archivetest.Stores(t, esCfg, pgCfg, "spillway-test")
	ctx := testenv.Context(t, 2*time.Minute)
	src := testenv.PG(t) // the users' database: another schema
	conn, err := pgx.Connect(ctx, src.URL.Value())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	table := pgx.Identifier{src.Schema, "their_events"}.Sanitize()
	if _, err := conn.Exec(ctx, `CREATE TABLE `+table+` (event_id uuid, client text NOT NULL, kind text,
		created_at timestamp NOT NULL, data jsonb)`); err != nil {
		t.Fatal(err)
	}
	base := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -60)
	if _, err := conn.Exec(ctx, `INSERT INTO `+table+` SELECT gen_random_uuid(), 'c' || (i % 3), 'legacy', $1::timestamp + i * interval '1 hour',
		jsonb_build_object('i', i) FROM generate_series(1, 200) i`, base.Format("2006-01-02 15:04:05")); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO `+table+` VALUES (NULL, 'c0', NULL, $1::timestamp, NULL)`, base.Format("2006-01-02 15:04:05")); err != nil {
		t.Fatal(err)
	}
	environ := env(esCfg, pgCfg, "SPILLWAY_INGEST_MAX_PAST_AGE=48h", "SPILLWAY_SEARCH_COLD_TIER=true")
	code, stdout, stderr := runArchiver(t, environ, "import", "--table", src.Schema+".their_events",
		"--columns", "id=event_id,clientId=client,type=kind,timestamp=created_at,payload=data")
	if code != 0 || !strings.Contains(stdout, "imported: 201 records (201 new") {
		t.Fatalf("import: exit %d\n%s\n%s", code, stdout, stderr)
	}
	var first time.Time
	var n int64
	if err := archivetest.DB(t, pg).QueryRow(ctx, `SELECT min(ts), count(*) FROM events_all WHERE type = 'legacy' OR id LIKE 'imp-%'`).Scan(&first, &n); err != nil || n != 201 || !first.Equal(base) {
		t.Fatalf("archived %d rows from %s, want 201 from %s (%v)", n, first, base, err)
	}
	if code, _, stderr := runArchiver(t, environ, "import", "--table", src.Schema+".their_events", "--columns", "id=nope"); code == 0 || !strings.Contains(stderr, "nope") {
		t.Fatalf("a missing column: exit %d %s", code, stderr)
	}
}
