package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBuilds()
	os.Exit(code)
}

// result is what one in-process run of the command printed and returned.
type result struct {
	code           int
	stdout, stderr string
}

// spillway runs the command in-process with args, stdin and an environment of vars alone.
func spillway(ctx context.Context, stdin string, vars map[string]string, args ...string) result {
	var out, errs strings.Builder
	code := run(ctx, args, env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errs,
		getenv: func(k string) string { return vars[k] }})
	return result{code, out.String(), errs.String()}
}

func TestUsage(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		args []string
		code int
		out  string // in stdout, or in stderr when the code is not 0
	}{
		{nil, exitUsage, "Usage:"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"--version"}, exitOK, "spillway "},
		{[]string{"--help"}, exitOK, "Exit codes:"},
		{[]string{"count", "--help"}, exitOK, ""},
		{[]string{"post", "--searchable", "--async"}, exitUsage, "exclude each other"},
		{[]string{"post", "--nope"}, exitUsage, "unknown flag: --nope"},
		{[]string{"post", "/does/not/exist"}, exitUsage, "no such file"},
		{[]string{"list"}, exitUsage, "--client is required"},
		{[]string{"list", "--client", "c", "--from", "yesterday"}, exitUsage, "--from"},
		{[]string{"list", "--client", "c", "--output", "xml"}, exitUsage, "--output"},
		{[]string{"get"}, exitUsage, "one event id"},
		{[]string{"get", "x", "--search-url", "localhost:8081"}, exitUsage, "search URL"},
	} {
		r := spillway(ctx, "", nil, tc.args...)
		got := r.stdout
		if tc.code != exitOK {
			got = r.stderr
		}
		if r.code != tc.code || !strings.Contains(got, tc.out) {
			t.Errorf("spillway %q: exit %d, output %q; want exit %d and %q", tc.args, r.code, got, tc.code, tc.out)
		}
	}
}

// TestReadingInputs: line numbers are the lines events start on, blank lines counted, in
// NDJSON and in (pretty-printed) JSON arrays.
func TestReadingInputs(t *testing.T) {
	type seen struct {
		line int
		raw  string
	}
	collect := func(read func(*bufio.Reader, func(int, []byte) error) error, input string) ([]seen, error) {
		var got []seen
		err := read(bufio.NewReader(strings.NewReader(input)), func(line int, raw []byte) error {
			got = append(got, seen{line, strings.TrimSpace(string(raw))})
			return nil
		})
		return got, err
	}
	lines, err := collect(readLines, "{\"a\":1}\n\n  \n{\"b\":2}\r\nnot json\n{\"c\":3}")
	want := []seen{{1, `{"a":1}`}, {4, `{"b":2}`}, {5, "not json"}, {6, `{"c":3}`}}
	if err != nil || fmt.Sprint(lines) != fmt.Sprint(want) {
		t.Errorf("NDJSON: %v %v, want %v", lines, err, want)
	}
	readArr := func(r *bufio.Reader, add func(int, []byte) error) error { return readArray(r, add) }
	elems, err := collect(readArr, "\n[\n  {\"a\":1},\n  {\n    \"b\": 2\n  }, {\"c\":3},\n\n 7\n]\n")
	want = []seen{{3, `{"a":1}`}, {4, "{\n    \"b\": 2\n  }"}, {6, `{"c":3}`}, {8, "7"}}
	if err != nil || fmt.Sprint(elems) != fmt.Sprint(want) {
		t.Errorf("array: %v %v, want %v", elems, err, want)
	}
	if _, err := collect(readArr, "[{\"a\":1},\n{\"b\":}]"); err == nil || !strings.HasPrefix(err.Error(), "2: ") {
		t.Errorf("broken array: %v, want an error on line 2", err)
	}
}

// TestAgainstTheServices runs the command against the real ingest and search binaries.
func TestAgainstTheServices(t *testing.T) {
	es := testenv.ES(t)
	ingest := testenv.StartService(t, "cmd/ingest", es)
	search := testenv.StartService(t, "cmd/search", es, "SPILLWAY_SEARCH_STREAM_POLL=50ms")
	vars := map[string]string{"SPILLWAY_INGEST_URL": ingest.URL, "SPILLWAY_SEARCH_URL": search.URL}
	ctx := testenv.Context(t, 3*time.Minute)
	who := testenv.Name("c")
	dir := t.TempDir()
	ts := time.Now().UTC().Add(-time.Minute).Format(time.RFC3339)

	// Line 4 is not JSON (refused here), line 5 is too far in the future (refused by ingest,
	// which stores nothing of its request: the client sends the others again without it).
	ndjson := filepath.Join(dir, "events.ndjson")
	write(t, ndjson, fmt.Sprintf(`{"clientId":%[1]q,"type":"a"}

{"clientId":%[1]q,"type":"b","payload":{"n":1}}
{"clientId":%[1]q,
{"clientId":%[1]q,"timestamp":%[3]q}
{"id":"dup-1","clientId":%[1]q,"timestamp":%[2]q}
`, who, ts, time.Now().Add(72*time.Hour).UTC().Format(time.RFC3339)))
	r := spillway(ctx, "", vars, "post", "--searchable", "--gzip", ndjson)
	if r.code != exitRejected || !strings.HasPrefix(r.stdout, "5 events read: 3 accepted (0 already stored), 2 refused\n") ||
		!regexp.MustCompile(`events.ndjson:4: .*\n.*events.ndjson:5: timestamp: is more than 24h in the future`).MatchString(r.stdout) {
		t.Fatalf("post: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// A JSON array from stdin, resending dup-1: it is already stored, and stored once.
	r = spillway(ctx, fmt.Sprintf(`[{"id":"dup-1","clientId":%[1]q,"timestamp":%[2]q},
		{"clientId":%[1]q,"type":"c"}]`, who, ts), vars, "post", "--searchable")
	if r.code != exitOK || r.stdout != "2 events read: 2 accepted (1 already stored), 0 refused\n" {
		t.Fatalf("post stdin: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	r = spillway(ctx, "", vars, "count", "--client", who)
	if r.code != exitOK || r.stdout != "4\n" {
		t.Fatalf("count: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	r = spillway(ctx, "", vars, "list", "--client", who, "--page-size", "1")
	var listed []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("list printed %q: %v", line, err)
		}
		listed = append(listed, ev)
	}
	if r.code != exitOK || len(listed) != 4 || listed[0]["id"] != "dup-1" {
		t.Fatalf("list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = spillway(ctx, "", vars, "list", "--client", who, "--type", "b", "--output", "table")
	if rows := strings.Split(strings.TrimSpace(r.stdout), "\n"); r.code != exitOK || len(rows) != 2 ||
		!strings.HasPrefix(rows[0], "TIMESTAMP") || !strings.Contains(rows[1], `{"n":1}`) {
		t.Fatalf("list table: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = spillway(ctx, "", vars, "get", "dup-1")
	if r.code != exitOK || !strings.Contains(r.stdout, `"id":"dup-1","clientId":"`+who+`"`) {
		t.Fatalf("get: exit %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r = spillway(ctx, "", vars, "get", "no-such-event"); r.code != exitRejected {
		t.Fatalf("get a missing event: exit %d %s", r.code, r.stderr)
	}
	if r = spillway(ctx, "", vars, "count", "--client", who, "--search-url", "http://127.0.0.1:1", "--retry-for", "0"); r.code != exitFailure {
		t.Fatalf("count without a service: exit %d %s", r.code, r.stderr)
	}

	testTail(t, ctx, vars, who)
}

// testTail: tail prints new events until interrupted and says where to continue; a second
// tail from there prints exactly what arrived in between.
func testTail(t *testing.T, ctx context.Context, vars map[string]string, who string) {
	post := func(ids ...string) {
		t.Helper()
		var b strings.Builder
		for _, id := range ids {
			fmt.Fprintf(&b, `{"id":%q,"clientId":%q,"type":"live"}`+"\n", id, who)
		}
		if r := spillway(ctx, b.String(), vars, "post", "--searchable"); r.code != exitOK {
			t.Fatalf("post: %d %s %s", r.code, r.stdout, r.stderr)
		}
	}
	tailing := func(args ...string) (out *testenv.SyncBuffer, stop func() result) {
		out = &testenv.SyncBuffer{}
		var errs strings.Builder
		tctx, cancel := context.WithCancel(ctx)
		done := make(chan int, 1)
		go func() {
			done <- run(tctx, append([]string{"tail", "--client", who, "--type", "live"}, args...),
				env{stdout: out, stderr: &errs, getenv: func(k string) string { return vars[k] }})
		}()
		return out, func() result { cancel(); code := <-done; return result{code, out.String(), errs.String()} }
	}

	// The stream starts at its subscription, which the command does not announce: post until
	// an event arrives.
	out, stop := tailing()
	last := ""
	for i := 0; !strings.Contains(out.String(), `"type":"live"`); i++ {
		if ctx.Err() != nil {
			t.Fatal("tail printed nothing")
		}
		last = fmt.Sprintf("live-%d", i)
		post(last)
	}
	for !strings.Contains(out.String(), `"id":"`+last+`"`) && ctx.Err() == nil { // posted after one that arrived
		time.Sleep(10 * time.Millisecond)
	}
	r := stop()
	m := regexp.MustCompile(`continue with --last-event-id (\S+)`).FindStringSubmatch(r.stderr)
	if r.code != exitOK || m == nil {
		t.Fatalf("tail: exit %d, stderr %q", r.code, r.stderr)
	}

	post("away-1", "away-2") // while no one follows
	out, stop = tailing("--last-event-id", m[1])
	for strings.Count(out.String(), "\n") < 2 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	r = stop()
	var ids []string
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var ev struct{ ID string }
		_ = json.Unmarshal([]byte(line), &ev)
		ids = append(ids, ev.ID)
	}
	slices.Sort(ids) // ingest may index the events of one request in any order
	if strings.Join(ids, " ") != "away-1 away-2" {
		t.Fatalf("tail --last-event-id printed %v, want the two events posted in between (stderr %q)", ids, r.stderr)
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
