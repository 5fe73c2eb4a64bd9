package search_test

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/spillway/spillway/pkg/event"
)

// paginate follows nextCursor from the first page to the last and returns every event.
func paginate(t *testing.T, srv *server, q url.Values, between func(page int, last apiEvent)) []apiEvent {
	t.Helper()
	var all []apiEvent
	q = cloneValues(q)
	for page := 0; ; page++ {
		var body listBody
		if code := srv.get(t, "/api/v1/events", q, &body); code != 200 {
			t.Fatalf("page %d: status %d", page, code)
		}
		all = append(all, body.Events...)
		if body.NextCursor == nil {
			return all
		}
		if len(body.Events) == 0 {
			t.Fatalf("page %d: empty page with a next cursor", page)
		}
		if between != nil {
			between(page, body.Events[len(body.Events)-1])
		}
		q.Set("cursor", *body.NextCursor)
	}
}

func cloneValues(q url.Values) url.Values {
	c := url.Values{}
	for k, v := range q {
		c[k] = slices.Clone(v)
	}
	return c
}

// checkOrder fails unless events are strictly increasing (asc) or decreasing in (timestamp, id).
func checkOrder(t *testing.T, events []apiEvent, desc bool) {
	t.Helper()
	for i := 1; i < len(events); i++ {
		a, b := sortKey(events[i-1]), sortKey(events[i])
		if !desc && a >= b || desc && a <= b {
			t.Fatalf("events %d and %d out of order: %s then %s", i-1, i, a, b)
		}
	}
}

func TestPaginationIsCompleteInBothOrders(t *testing.T) {
	env := newESEnv(t, 2)
	srv := startServer(t, env.store, env.store, testConfig())

	// 10,500 events of c1 sharing 105 timestamps (100 events each), across midnight (two
	// daily indices, two shards each); c2's events and c1's other type interleave.
	t0 := time.Date(2026, 3, 9, 23, 59, 59, 950000000, time.UTC)
	var events []event.Event
	want := map[string]bool{}
	for i := 0; i < 10500; i++ {
		ts := t0.Add(time.Duration(i/100) * time.Millisecond)
		e := ev(event.NewID(), "c1", "click", ts)
		events = append(events, e)
		want[e.ID] = true
		if i%7 == 0 {
			events = append(events, ev(event.NewID(), "c2", "click", ts), ev(event.NewID(), "c1", "view", ts))
		}
	}
	rand.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	env.index(t, events)

	q := url.Values{"clientId": {"c1"}, "type": {"click"}, "limit": {"1000"}}
	asc := paginate(t, srv, q, nil)
	checkOrder(t, asc, false)
	if len(asc) != len(want) {
		t.Fatalf("ascending pages returned %d events, want %d", len(asc), len(want))
	}
	for _, e := range asc {
		if !want[e.ID] || e.ClientID != "c1" || e.Type != "click" {
			t.Fatalf("unexpected event %+v", e)
		}
	}

	// Descending with a page size that cuts through groups of equal timestamps.
	q.Set("order", "desc")
	q.Set("limit", "997")
	desc := paginate(t, srv, q, nil)
	checkOrder(t, desc, true)
	if len(desc) != len(asc) {
		t.Fatalf("descending: %d events, ascending %d", len(desc), len(asc))
	}
	for i := range desc {
		if desc[i].ID != asc[len(asc)-1-i].ID {
			t.Fatalf("descending event %d is %s, want %s", i, desc[i].ID, asc[len(asc)-1-i].ID)
		}
	}

	var c struct{ Count int64 }
	if code := srv.get(t, "/api/v1/events/count", url.Values{"clientId": {"c1"}, "type": {"click"}}, &c); code != 200 || c.Count != int64(len(asc)) {
		t.Fatalf("count %d (status %d), pages held %d", c.Count, code, len(asc))
	}

	// A real cursor: tampered with, or replayed with other parameters, is a 400 naming it.
	var first listBody
	srv.get(t, "/api/v1/events", url.Values{"clientId": {"c1"}, "limit": {"10"}}, &first)
	cur := []byte(*first.NextCursor)
	cur[3] ^= 2
	for name, q := range map[string]url.Values{
		"tampered":     {"clientId": {"c1"}, "limit": {"10"}, "cursor": {string(cur)}},
		"other client": {"clientId": {"c2"}, "limit": {"10"}, "cursor": {*first.NextCursor}},
		"other order":  {"clientId": {"c1"}, "order": {"desc"}, "cursor": {*first.NextCursor}},
	} {
		var eb errorBody
		if code := srv.get(t, "/api/v1/events", q, &eb); code != 400 || !slices.Contains(eb.fields(), "cursor") {
			t.Errorf("%s cursor: %d %+v", name, code, eb)
		}
	}
}

// TestPaginationWhileIndexing indexes new events between pages, ahead of and behind the
// cursor: every event that existed when the pagination started comes exactly once, the ones
// indexed ahead of the cursor come too, and the ones behind it never do. Meanwhile a writer
// indexes more events all the time, so refreshes also land while pages are being read.
func TestPaginationWhileIndexing(t *testing.T) {
	for _, order := range []string{"asc", "desc"} {
		t.Run(order, func(t *testing.T) {
			env := newESEnv(t, 1)
			srv := startServer(t, env.store, env.store, testConfig())
			t0 := time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)
			span := 3000 * time.Millisecond
			var initial []event.Event
			for i := 0; i < 3000; i++ {
				initial = append(initial, ev(event.NewID(), "c1", "", t0.Add(time.Duration(i/3)*3*time.Millisecond)))
			}
			env.index(t, initial)

			var concurrent sync.Map
			stop, stopped := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(stopped)
				r := rand.New(rand.NewPCG(9, 10))
				for {
					select {
					case <-stop:
						return
					default:
					}
					var batch []event.Event
					for i := 0; i < 20; i++ {
						e := ev(event.NewID(), "c1", "", t0.Add(time.Duration(r.Int64N(int64(span)))))
						concurrent.Store(e.ID, true)
						batch = append(batch, e)
					}
					if err := env.tryBulk(bulkBody(env, batch), "false"); err != nil {
						t.Error(err) // not Fatal: this is not the test's goroutine
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			}()

			r := rand.New(rand.NewPCG(7, 8))
			ahead, behind := map[string]bool{}, map[string]bool{}
			q := url.Values{"clientId": {"c1"}, "limit": {"100"}, "order": {order}}
			got := paginate(t, srv, q, func(page int, last apiEvent) {
				var batch []event.Event
				for i := 0; i < 40; i++ {
					ts := t0.Add(time.Duration(r.Int64N(int64(span))) / time.Microsecond * time.Microsecond)
					if i%10 == 0 {
						// Exactly at the cursor's timestamp: the id decides the side.
						ts, _ = time.Parse(time.RFC3339Nano, last.Timestamp)
					}
					e := ev(event.NewID(), "c1", "", ts)
					k := event.Truncate(ts).Format(event.TimeFormat) + "\x00" + e.ID
					if (order == "asc") == (k > sortKey(last)) {
						ahead[e.ID] = true
					} else {
						behind[e.ID] = true
					}
					batch = append(batch, e)
				}
				env.index(t, batch) // searchable before the next page is asked for
			})
			close(stop)
			<-stopped
			checkOrder(t, got, order == "desc")
			seen := map[string]bool{}
			for _, e := range got {
				if seen[e.ID] {
					t.Fatalf("%s returned twice", e.ID)
				}
				seen[e.ID] = true
				if behind[e.ID] {
					t.Fatalf("%s was indexed behind the cursor but returned", e.ID)
				}
			}
			for _, e := range initial {
				if !seen[e.ID] {
					t.Fatalf("pre-existing event %s missed", e.ID)
				}
			}
			for id := range ahead {
				if !seen[id] {
					t.Fatalf("event %s indexed ahead of the cursor missed", id)
				}
			}
			if len(ahead) == 0 || len(behind) == 0 {
				t.Fatalf("the test indexed %d events ahead and %d behind; it needs both", len(ahead), len(behind))
			}
			fromWriter := 0
			for _, e := range got {
				if _, ok := concurrent.Load(e.ID); ok {
					fromWriter++
				}
			}
			if len(got) != len(initial)+len(ahead)+fromWriter {
				t.Fatalf("%d events, want %d initial + %d ahead + %d from the writer", len(got), len(initial), len(ahead), fromWriter)
			}
			t.Logf("%d events: %d initial, %d indexed ahead, %d behind (not returned), %d of the concurrent writer's", len(got), len(initial), len(ahead), len(behind), fromWriter)
		})
	}
}

func TestTimeBoundsClientsCountAndGet(t *testing.T) {
	env := newESEnv(t, 1)
	srv := startServer(t, env.store, env.store, testConfig())
	from := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	to := from.Add(time.Hour)
	us := time.Microsecond
	var events []event.Event
	for _, c := range []string{"a", "b", "c"} {
		for i, ts := range []time.Time{from.Add(-us), from, from.Add(us), to.Add(-us), to} {
			events = append(events, ev(c+"-"+strconv.Itoa(i), c, "", ts))
		}
	}
	env.index(t, events)

	ids := func(q url.Values) []string {
		t.Helper()
		var body listBody
		if code := srv.get(t, "/api/v1/events", q, &body); code != 200 {
			t.Fatalf("%v: status %d", q, code)
		}
		var out []string
		for _, e := range body.Events {
			out = append(out, e.ID)
		}
		return out
	}
	count := func(q url.Values) int64 {
		t.Helper()
		var c struct{ Count int64 }
		if code := srv.get(t, "/api/v1/events/count", q, &c); code != 200 {
			t.Fatalf("count %v: status %d", q, code)
		}
		return c.Count
	}
	fs, ts := from.Format(time.RFC3339Nano), to.Format(time.RFC3339Nano)
	for _, tc := range []struct {
		q    url.Values
		want string
	}{
		{url.Values{"clientId": {"a"}, "from": {fs}, "to": {ts}}, "[a-1 a-2 a-3]"},
		{url.Values{"clientId": {"a"}, "from": {fs}}, "[a-1 a-2 a-3 a-4]"},
		{url.Values{"clientId": {"a"}, "to": {ts}}, "[a-0 a-1 a-2 a-3]"},
		// The same instants written in another zone.
		{url.Values{"clientId": {"a"}, "from": {from.In(time.FixedZone("", -5*3600)).Format(time.RFC3339)}, "to": {"2026-05-01T02:00:00+01:00"}}, "[a-1 a-2 a-3]"},
		{url.Values{"clientId": {"a", "c"}, "from": {fs}, "to": {ts}}, "[a-1 c-1 a-2 c-2 a-3 c-3]"},
		{url.Values{"clientId": {"c", "b"}, "from": {fs}, "to": {ts}, "order": {"desc"}, "limit": {"2"}}, "[c-3 b-3]"},
		{url.Values{"clientId": {"nobody"}}, "[]"},
	} {
		if got := fmt.Sprint(ids(tc.q)); got != tc.want {
			t.Errorf("%v: %s, want %s", tc.q, got, tc.want)
		}
	}
	if n := count(url.Values{"clientId": {"a", "b"}, "from": {fs}, "to": {ts}}); n != 6 {
		t.Errorf("count a,b in window: %d", n)
	}
	if n := count(url.Values{"clientId": {"a", "b", "c"}}); n != 15 {
		t.Errorf("count all: %d", n)
	}

	var got apiEvent
	if code := srv.get(t, "/api/v1/events/b-2", nil, &got); code != 200 {
		t.Fatalf("get: %d", code)
	}
	if got.ID != "b-2" || got.ClientID != "b" || got.Timestamp != "2026-05-01T00:00:00.000001Z" || string(got.Payload) != `{"id":"b-2"}` || len(got.IngestedAt) != len(got.Timestamp) {
		t.Fatalf("get: %+v", got)
	}
	var eb errorBody
	if code := srv.get(t, "/api/v1/events/no-such-event", nil, &eb); code != 404 || eb.Error.Code != "not_found" {
		t.Fatalf("get missing: %d %+v", code, eb)
	}
}

// TestQueryInjectionMatchesOnlyItself: clientIds that look like query syntax are exact values.
func TestQueryInjectionMatchesOnlyItself(t *testing.T) {
	env := newESEnv(t, 1)
	srv := startServer(t, env.store, env.store, testConfig())
	clients := []string{"a", "b", "*", "a*", "?", "a OR b", "a OR *", `a" OR "b`, "clientId:a", `{"match_all":{}}`,
		"_all", `\`, "a\\*", "(a)", "<script>", "a b", "../*", "a%20b"}
	var events []event.Event
	for i, c := range clients {
		events = append(events, ev(fmt.Sprintf("e%02d", i), c, "", time.Date(2026, 6, 1, 0, 0, i, 0, time.UTC)))
	}
	env.index(t, events)
	for i, c := range clients {
		var body listBody
		if code := srv.get(t, "/api/v1/events", url.Values{"clientId": {c}, "type": {"*"}}, &body); code != 200 || len(body.Events) != 0 {
			t.Fatalf("client %q with type *: %d %d events", c, code, len(body.Events))
		}
		if code := srv.get(t, "/api/v1/events", url.Values{"clientId": {c}}, &body); code != 200 {
			t.Fatalf("client %q: status %d", c, code)
		}
		if len(body.Events) != 1 || body.Events[0].ID != fmt.Sprintf("e%02d", i) || body.Events[0].ClientID != c {
			t.Fatalf("client %q matched %+v", c, body.Events)
		}
		var n struct{ Count int64 }
		if srv.get(t, "/api/v1/events/count", url.Values{"clientId": {c}}, &n); n.Count != 1 {
			t.Fatalf("client %q: count %d", c, n.Count)
		}
	}
}
