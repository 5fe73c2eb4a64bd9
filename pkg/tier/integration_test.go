package tier_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillway/spillway/internal/archivetest"
	"github.com/spillway/spillway/internal/metrictest"
	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/archive"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/httpx"
	"github.com/spillway/spillway/pkg/pgstore"
	"github.com/spillway/spillway/pkg/search"
	"github.com/spillway/spillway/pkg/tier"
)

const day = 24 * time.Hour

// history is a test's data: events in Elasticsearch, archived, with retention applied.
type history struct {
	now    time.Time
	es     *esstore.Store
	pg     *pgstore.Store // the archiver's pool
	pgCfg  config.Postgres
	events []event.Event
}

// ids that sort differently under byte order than under any linguistic collation.
var trickyIDs = []string{"A", "Z", "_", "a", "a-", "a0", "aB", "ab", "é", "ü", "~", "Ω", "日本"}

// makeEvents spreads perDay events of each client over the given days before now, plus groups
// sharing one timestamp at b−1µs (many), b, and b+1µs.
func makeEvents(now, b time.Time, days []int, clients, perDay int) []event.Event {
	r := rand.New(rand.NewPCG(7, 8))
	var out []event.Event
	add := func(id, client string, ts time.Time) {
		typ := []string{"click", "view"}[len(out)%2]
		out = append(out, event.Event{ID: id, ClientID: client, Type: typ, Timestamp: ts, IngestedAt: now,
			Payload: json.RawMessage(fmt.Sprintf(`{"n":%d,"s":"ü \"q\"","deep":{"a":[1,null,true]}}`, len(out)))})
	}
	today := now.Truncate(day)
	for _, d := range days {
		start := today.AddDate(0, 0, -d)
		for c := 0; c < clients; c++ {
			for i := 0; i < perDay; i++ {
				ts := start.Add(time.Duration(r.Int64N(int64(day)))).Truncate(time.Microsecond)
				if i%5 == 0 {
					ts = start.Add(12 * time.Hour) // a tie inside the day
				}
				if ts.After(now) {
					ts = now.Add(-time.Duration(i+1) * time.Second).Truncate(time.Microsecond)
				}
				add(event.NewID(), fmt.Sprintf("c%d", c), ts)
			}
		}
	}
	for i := 0; i < 40; i++ {
		add(fmt.Sprintf("%s-below-%02d", trickyIDs[i%len(trickyIDs)], i), fmt.Sprintf("c%d", i%2), b.Add(-time.Microsecond))
	}
	for i := 0; i < 13; i++ {
		add(fmt.Sprintf("%s-at", trickyIDs[i]), "c0", b)
		add(fmt.Sprintf("%s-above", trickyIDs[i]), "c1", b.Add(time.Microsecond))
	}
	return out
}

// setupHistory indexes events into the test's prefix, archives them with the archiver and applies
// retention at olderThan (with ingest.max_past_age below it, as config.RetentionAllowed demands).
func setupHistory(t *testing.T, pgCfg config.Postgres, events []event.Event, now time.Time, olderThan time.Duration) *history {
	t.Helper()
	ctx := testenv.Context(t, 5*time.Minute)
	esCfg := testenv.ES(t)
	es, pg := archivetest.Stores(t, esCfg, pgCfg, "spillway-test-archiver")
	precreate(t, esCfg.URLs[0], es, events)
	if err := archivetest.Index(ctx, es, events); err != nil {
		t.Fatal(err)
	}
	h := &history{now: now, es: es, pg: pg, pgCfg: pgCfg, events: events}
	a := h.archiver()
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(context.Background()) }()
	archivetest.WaitCaughtUp(t, es, pg, 3*time.Minute)
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Stop(sctx); err != nil {
		t.Fatal(err)
	}
	<-done
	if err := es.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	h.retain(t, olderThan)
	return h
}

// precreate creates the events' daily indices (from the template) a few at a time: a bulk
// request creates the indices it needs one after the other, which dominates a test's run time
// when they are many.
func precreate(t testing.TB, esURL string, es *esstore.Store, events []event.Event) {
	t.Helper()
	names := map[string]bool{}
	for _, e := range events {
		names[es.IndexFor(e.Timestamp)] = true
	}
	work := make(chan string)
	errs := make(chan error, len(names))
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range work {
				req, _ := http.NewRequest(http.MethodPut, esURL+"/"+name, nil)
				res, err := http.DefaultClient.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode != 200 {
						err = fmt.Errorf("create %s: status %d", name, res.StatusCode)
					}
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	for name := range names {
		work <- name
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func (h *history) archiver() *archive.Archiver {
	return archive.New(h.es, archive.Postgres(h.pg), archive.Options{
		Config: config.Archiver{BatchSize: 5000, PollInterval: 20 * time.Millisecond, BackoffMax: 500 * time.Millisecond, VerifyBucket: time.Hour},
		Now:    func() time.Time { return h.now }, Indices: h.es, Boundary: h.pg,
	})
}

// retain applies retention, checks that it dropped every index it was due to and nothing else,
// and returns the new boundary.
func (h *history) retain(t *testing.T, olderThan time.Duration) time.Time {
	t.Helper()
	cfg := &config.Config{Ingest: config.Ingest{MaxPastAge: maxPastAge}, Search: config.Search{ColdTier: true}}
	if err := config.RetentionAllowed(olderThan, cfg); err != nil {
		t.Fatal(err)
	}
	rep, err := h.archiver().Retention(testenv.Context(t, 2*time.Minute), archive.RetentionRequest{OlderThan: olderThan, Apply: true}, 0)
	if err != nil || rep.Kept() != 0 {
		t.Fatalf("retention: %v, report %+v", err, rep)
	}
	want := h.now.Add(-olderThan).Truncate(day)
	idx, err := h.es.Indices(testenv.Context(t, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.BoundaryAfter.Equal(want) || len(idx) == 0 || idx[0].Day.Before(want) {
		t.Fatalf("boundary %s, want %s; oldest index left %+v", rep.BoundaryAfter, want, idx[0])
	}
	return want
}

// maxPastAge lets retention run at 20 days and more (it must exceed max_past_age + 24h).
const maxPastAge = 18 * day

// server is the read API over both tiers, as cmd/search wires it with search.cold_tier.
type server struct {
	*httptest.Server
	tier *tier.Store
	reg  *prometheus.Registry
}

func startServer(t *testing.T, h *history, pgCfg config.Postgres, maxAge time.Duration) *server {
	t.Helper()
	pgCfg.StatementTimeout = 5 * time.Second
	pg, err := pgstore.Open(context.Background(), pgCfg, pgstore.Options{MaxConns: 2, ReadOnly: true, ApplicationName: "spillway-test-search"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	reg := prometheus.NewRegistry()
	// The test refreshes the boundary itself after moving it; a generous MaxAge keeps a loaded
	// machine from making it stale in between (the outage test covers staleness).
	ts := tier.New(h.es, pg, tier.Options{Prefix: h.es.Prefix(), Refresh: 50 * time.Millisecond, MaxAge: maxAge,
		HotHorizon: maxPastAge + day, Registerer: reg})
	if err := ts.Refresh(testenv.Context(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ts.Run(ctx) }()
	cfg := config.Search{DefaultLimit: 100, MaxLimit: 1000, MaxClientIDs: 100, MaxStreams: 10, StreamPoll: 50 * time.Millisecond,
		StreamHeartbeat: 15 * time.Second, QueryTimeout: 10 * time.Second, CursorKey: "test-cursor-key-0123456789abcdef"}
	svc := search.New(ts, h.es, cfg, nil, reg)
	r := httpx.NewRouter()
	r.Use(httpx.WithRequestID)
	svc.Mount(r)
	srv := httptest.NewServer(r)
	t.Cleanup(func() { srv.Close(); cancel(); <-done })
	return &server{Server: srv, tier: ts, reg: reg}
}

type apiEvent struct {
	ID         string          `json:"id"`
	ClientID   string          `json:"clientId"`
	Type       string          `json:"type"`
	Timestamp  string          `json:"timestamp"`
	IngestedAt string          `json:"ingestedAt"`
	Payload    json.RawMessage `json:"payload"`
}

// get performs a GET and decodes the JSON answer; it returns the status.
func (s *server) get(t *testing.T, path string, q url.Values, out any) int {
	t.Helper()
	u := s.URL + path
	if q != nil {
		u += "?" + q.Encode()
	}
	res, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if out != nil && res.StatusCode == 200 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("GET %s: %v: %s", u, err, b)
		}
	}
	if res.StatusCode != 200 && out != nil {
		if e, ok := out.(*errorBody); ok {
			_ = json.Unmarshal(b, e)
		}
	}
	return res.StatusCode
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// paginate follows nextCursor; between runs after each page (with the page number).
func (s *server) paginate(t *testing.T, q url.Values, between func(page int)) []apiEvent {
	t.Helper()
	var all []apiEvent
	q = cloneValues(q)
	for page := 0; page < 100000; page++ {
		var body struct {
			Events     []apiEvent `json:"events"`
			NextCursor *string    `json:"nextCursor"`
		}
		if code := s.get(t, "/api/v1/events", q, &body); code != 200 {
			t.Fatalf("page %d: status %d", page, code)
		}
		all = append(all, body.Events...)
		if body.NextCursor == nil {
			return all
		}
		if between != nil {
			between(page)
		}
		q.Set("cursor", *body.NextCursor)
	}
	t.Fatal("pagination did not end")
	return nil
}

func cloneValues(q url.Values) url.Values {
	c := url.Values{}
	for k, v := range q {
		c[k] = slices.Clone(v)
	}
	return c
}

// want lists the ids of the events matching clients and [from, to) in API order.
func want(events []event.Event, clients []string, from, to time.Time, desc bool) []string {
	var sel []event.Event
	for _, e := range events {
		ts := event.Truncate(e.Timestamp)
		if slices.Contains(clients, e.ClientID) && (from.IsZero() || !ts.Before(from)) && (to.IsZero() || ts.Before(to)) {
			sel = append(sel, e)
		}
	}
	slices.SortFunc(sel, func(a, b event.Event) int {
		c := event.Truncate(a.Timestamp).Compare(event.Truncate(b.Timestamp))
		if c == 0 {
			c = strings.Compare(a.ID, b.ID)
		}
		if desc {
			c = -c
		}
		return c
	})
	ids := make([]string, len(sel))
	for i, e := range sel {
		ids[i] = e.ID
	}
	return ids
}

func ids(evs []apiEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

// checkSame fails unless got lists exactly want, in order, each once.
func checkSame(t *testing.T, what string, got, want []string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	seen := map[string]int{}
	for _, id := range got {
		seen[id]++
	}
	var dup, missing []string
	for id, n := range seen {
		if n > 1 {
			dup = append(dup, id)
		}
	}
	for _, id := range want {
		if seen[id] == 0 {
			missing = append(missing, id)
		}
	}
	first := 0
	for first < min(len(got), len(want)) && got[first] == want[first] {
		first++
	}
	t.Fatalf("%s: got %d events, want %d; duplicated %v, missing %d %v; first difference at %d", what, len(got), len(want),
		dup[:min(len(dup), 10)], len(missing), missing[:min(len(missing), 10)], first)
}

func timeParam(t time.Time) string { return t.Format(time.RFC3339Nano) }

// TestIntegrationWholeHistoryAcrossTiers: 90 days of events of a few clients, archived, with the
// Elasticsearch indices older than 30 days dropped; the API answers over the whole history as
// if one store held it.
func TestIntegrationWholeHistoryAcrossTiers(t *testing.T) {
	now := time.Now().UTC()
	b := now.Add(-30 * day).Truncate(day)
	// Every day in the long form; every third day (and the days at the boundaries the test
	// moves to) in the short one, since creating daily indices is most of this test's time.
	var days []int
	clients, perDay := 3, 4
	for d := 0; d < 90; d++ {
		if !testenv.Short() || d%3 == 0 || d == 31 || d == 30 || d == 26 || d == 25 || d == 21 || d == 20 {
			days = append(days, d)
		}
	}
	if !testenv.Short() {
		clients, perDay = 5, 40
	}
	events := makeEvents(now, b, days, clients, perDay)
	h := setupHistory(t, testenv.PG(t), events, now, 30*day)
	srv := startServer(t, h, h.pgCfg, time.Minute)
	all := []string{"c0", "c1", "c2"}

	ranges := []struct {
		name     string
		from, to time.Time
	}{
		{"everything", time.Time{}, time.Time{}},
		{"straddling", b.Add(-10 * day), b.Add(3 * day)},
		{"from the tie below", b.Add(-time.Microsecond), time.Time{}},
		{"to just above", time.Time{}, b.Add(time.Microsecond)},
		{"cold only", b.Add(-60 * day), b},
		{"hot only", b, time.Time{}},
	}
	for _, rg := range ranges {
		for _, desc := range []bool{false, true} {
			for _, cl := range [][]string{{"c0"}, all} {
				t.Run(fmt.Sprintf("%s desc=%v clients=%d", rg.name, desc, len(cl)), func(t *testing.T) {
					q := url.Values{"clientId": cl, "limit": {"37"}}
					if desc {
						q.Set("order", "desc")
					}
					if !rg.from.IsZero() {
						q.Set("from", timeParam(rg.from))
					}
					if !rg.to.IsZero() {
						q.Set("to", timeParam(rg.to))
					}
					w := want(events, cl, rg.from, rg.to, desc)
					if len(w) < 20 {
						t.Fatalf("only %d events expected: the test checks too little", len(w))
					}
					got := ids(srv.paginate(t, q, nil))
					checkSame(t, "pages", got, w)
					if rg.name == "from the tie below" && !(slices.Contains(got, "A-below-00") && slices.Contains(got, "A-at")) {
						t.Fatal("the events sharing the instants around the boundary are not all there")
					}
					q.Del("limit")
					q.Del("order")
					var c struct{ Count int64 }
					if code := srv.get(t, "/api/v1/events/count", q, &c); code != 200 || c.Count != int64(len(w)) {
						t.Fatalf("count: %d %d, want %d", code, c.Count, len(w))
					}
				})
			}
		}
	}

	t.Run("cold event by id", func(t *testing.T) {
		var cold event.Event
		for _, e := range events {
			if e.Timestamp.Before(b.Add(-40 * day)) {
				cold = e
				break
			}
		}
		if _, err := h.es.Get(testenv.Context(t, time.Minute), cold.ID, time.Time{}); err == nil {
			t.Fatal("the cold event is still in Elasticsearch: retention did not drop its index")
		}
		var got apiEvent
		if code := srv.get(t, "/api/v1/events/"+url.PathEscape(cold.ID), nil, &got); code != 200 {
			t.Fatalf("status %d", code)
		}
		if got.ClientID != cold.ClientID || got.Type != cold.Type || got.Timestamp != event.Truncate(cold.Timestamp).Format(event.TimeFormat) ||
			got.IngestedAt != event.Truncate(cold.IngestedAt).Format(event.TimeFormat) {
			t.Fatalf("got %+v, want %+v", got, cold)
		}
		if same, why, err := testenv.SameJSON(got.Payload, cold.Payload); err != nil || !same {
			t.Fatalf("payload %s vs %s: %s %v", got.Payload, cold.Payload, why, err)
		}
		if strings.Contains(string(got.Payload), ", ") || strings.Contains(string(got.Payload), ": ") {
			t.Fatalf("payload %s is not compact like Elasticsearch's", got.Payload)
		}
		var hot apiEvent
		if code := srv.get(t, "/api/v1/events/"+url.PathEscape(events[len(events)-1].ID), nil, &hot); code != 200 || hot.ID != events[len(events)-1].ID {
			t.Fatalf("hot event: %d %+v", code, hot)
		}
		if code := srv.get(t, "/api/v1/events/no-such-event", nil, nil); code != 404 {
			t.Fatalf("unknown id: %d", code)
		}
	})

	// The boundary moves while readers paginate: ahead of an ascending reader still in the cold
	// part, and past a descending reader's position in the hot part. Nothing repeats or goes
	// missing.
	t.Run("boundary moves between pages", func(t *testing.T) {
		q := url.Values{"clientId": all, "limit": {"41"}}
		b25 := b
		got := srv.paginate(t, q, func(page int) {
			if page == 2 {
				b25 = h.retain(t, 25*day)
				if err := srv.tier.Refresh(testenv.Context(t, 10*time.Second)); err != nil {
					t.Fatal(err)
				}
			}
		})
		checkSame(t, "ascending", ids(got), want(events, all, time.Time{}, time.Time{}, false))

		q.Set("order", "desc")
		var moved bool
		b20 := now.Add(-20 * day).Truncate(day)
		var list []apiEvent
		q2 := cloneValues(q)
		for page := 0; ; page++ {
			var body struct {
				Events     []apiEvent `json:"events"`
				NextCursor *string    `json:"nextCursor"`
			}
			if code := srv.get(t, "/api/v1/events", q2, &body); code != 200 {
				t.Fatalf("page %d: %d", page, code)
			}
			list = append(list, body.Events...)
			if body.NextCursor == nil {
				break
			}
			// Once the reader is in the hot part below the 20-day boundary, move the boundary
			// past it: its position is now in the cold part.
			last := body.Events[len(body.Events)-1].Timestamp
			if !moved && last >= b25.Format(event.TimeFormat) && last < b20.Format(event.TimeFormat) {
				if got := h.retain(t, 20*day); !got.Equal(b20) {
					t.Fatalf("boundary %s, want %s", got, b20)
				}
				if err := srv.tier.Refresh(testenv.Context(t, 10*time.Second)); err != nil {
					t.Fatal(err)
				}
				moved = true
			}
			q2.Set("cursor", *body.NextCursor)
		}
		if !moved {
			t.Fatal("the descending reader never reached the moving range")
		}
		checkSame(t, "descending", ids(list), want(events, all, time.Time{}, time.Time{}, true))
	})

	// Metrics show both tiers at work; responses never did.
	if hot, cold := metrictest.Sum(t, srv.reg, "spillway_search_tier_queries_total", "tier", "hot"), metrictest.Sum(t, srv.reg, "spillway_search_tier_queries_total", "tier", "cold"); hot == 0 || cold == 0 {
		t.Fatalf("tier query metrics: hot %v cold %v", hot, cold)
	}
}

// TestIntegrationColdOutage: with PostgreSQL down (a private cluster, stopped), what
// Elasticsearch alone holds is still served, and anything that needs the archive is a 503 that
// names no tier — never a page with the cold events silently missing. Also once the last
// boundary read is too old to trust, and until PostgreSQL is back.
func TestIntegrationColdOutage(t *testing.T) {
	cluster := testenv.StartPG(t)
	pgCfg := testenv.PGAt(t, cluster.URL())
	now := time.Now().UTC()
	b := now.Add(-30 * day).Truncate(day)
	events := makeEvents(now, b, []int{33, 32, 31, 29, 2, 1, 0}, 2, 4)
	h := setupHistory(t, pgCfg, events, now, 30*day)
	srv := startServer(t, h, pgCfg, 2*time.Second)
	all := []string{"c0", "c1"}
	everything := url.Values{"clientId": all, "limit": {"7"}}
	checkSame(t, "before the outage", ids(srv.paginate(t, everything, nil)), want(events, all, time.Time{}, time.Time{}, false))

	cluster.Stop(t, true)
	hotFrom := now.Add(-15 * day) // above the fallback split (now − max_past_age − 1 day + 1 hour)
	expect503 := func(what, path string, q url.Values) {
		t.Helper()
		var e errorBody
		if code := srv.get(t, path, q, &e); code != 503 || e.Error.Code != "unavailable" {
			t.Fatalf("%s: status %d %+v, want 503", what, code, e)
		}
		if m := strings.ToLower(e.Error.Message); strings.Contains(m, "postgres") || strings.Contains(m, "cold") || strings.Contains(m, "elasticsearch") {
			t.Fatalf("%s: the message %q tells the tiers apart", what, e.Error.Message)
		}
	}
	checkHot := func(stage string) {
		t.Helper()
		q := url.Values{"clientId": all, "limit": {"5"}, "from": {timeParam(hotFrom)}}
		checkSame(t, stage+": hot range", ids(srv.paginate(t, q, nil)), want(events, all, hotFrom, time.Time{}, false))
		var c struct{ Count int64 }
		q.Del("limit")
		if code := srv.get(t, "/api/v1/events/count", q, &c); code != 200 || c.Count != int64(len(want(events, all, hotFrom, time.Time{}, false))) {
			t.Fatalf("%s: hot count %d %d", stage, code, c.Count)
		}
		var page struct{ Events []apiEvent }
		newest := want(events, all, time.Time{}, time.Time{}, true)[:5]
		if code := srv.get(t, "/api/v1/events", url.Values{"clientId": all, "limit": {"5"}, "order": {"desc"}}, &page); code != 200 || !slices.Equal(ids(page.Events), newest) {
			t.Fatalf("%s: newest page %d %v, want %v", stage, code, ids(page.Events), newest)
		}
		var hot apiEvent
		if code := srv.get(t, "/api/v1/events/"+url.PathEscape(newest[0]), nil, &hot); code != 200 {
			t.Fatalf("%s: hot get %d", stage, code)
		}
		expect503(stage+": oldest page", "/api/v1/events", url.Values{"clientId": all})
		expect503(stage+": count of everything", "/api/v1/events/count", url.Values{"clientId": all})
		expect503(stage+": cold get", "/api/v1/events/"+url.PathEscape(want(events, all, time.Time{}, time.Time{}, false)[0]), nil)
	}
	checkHot("boundary fresh")
	waitFor(t, "the boundary to go stale", func() bool { return metrictest.Sum(t, srv.reg, "spillway_search_tier_boundary_stale") == 1 })
	checkHot("boundary stale")
	// Stale, the range between the boundary and the fallback split is refused too: retention may
	// have moved the boundary there meanwhile.
	expect503("stale: just above the boundary", "/api/v1/events", url.Values{"clientId": all, "from": {timeParam(b)}})

	cluster.Start(t)
	waitFor(t, "the boundary to be read again", func() bool { return metrictest.Sum(t, srv.reg, "spillway_search_tier_boundary_stale") == 0 })
	var got []string
	waitFor(t, "cold reads to work again", func() bool {
		var page struct{ Events []apiEvent }
		if srv.get(t, "/api/v1/events", url.Values{"clientId": all, "limit": {"1"}}, &page) != 200 {
			return false
		}
		got = ids(srv.paginate(t, everything, nil))
		return true
	})
	checkSame(t, "after the outage", got, want(events, all, time.Time{}, time.Time{}, false))
}

// waitFor polls cond; the deadline only guards against a hang.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
