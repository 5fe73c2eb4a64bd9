package search_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spillway/spillway/pkg/event"
)

// fakeStore is a Store of function fields; a nil field fails the test when called.
type fakeStore struct {
	t     *testing.T
	mu    sync.Mutex
	pages []event.PageQuery
	page  func(event.PageQuery) ([]event.Event, error)
	count func(event.Filter) (int64, error)
	getFn func(string) (event.Event, error)
}

func (f *fakeStore) Page(ctx context.Context, q event.PageQuery) ([]event.Event, error) {
	f.mu.Lock()
	f.pages = append(f.pages, q)
	f.mu.Unlock()
	if f.page == nil {
		f.t.Errorf("unexpected Page(%+v)", q)
		return nil, errors.New("unexpected")
	}
	return f.page(q)
}

func (f *fakeStore) Count(ctx context.Context, q event.Filter) (int64, error) {
	if f.count == nil {
		f.t.Errorf("unexpected Count(%+v)", q)
		return 0, errors.New("unexpected")
	}
	return f.count(q)
}

func (f *fakeStore) Get(ctx context.Context, id string, _ time.Time) (event.Event, error) {
	if f.getFn == nil {
		f.t.Errorf("unexpected Get(%q)", id)
		return event.Event{}, errors.New("unexpected")
	}
	return f.getFn(id)
}

func (f *fakeStore) lastPage() event.PageQuery {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pages[len(f.pages)-1]
}

func TestInvalidParametersAre400NamingTheParameter(t *testing.T) {
	srv := startServer(t, &fakeStore{t: t}, nil, testConfig())
	many := strings.Repeat("clientId=x&", 101)
	tests := []struct {
		name, path, raw, field string
	}{
		{"missing clientId", "/api/v1/events", "limit=5", "clientId"},
		{"empty clientId", "/api/v1/events", "clientId=", "clientId"},
		{"long clientId", "/api/v1/events", "clientId=" + strings.Repeat("a", 129), "clientId"},
		{"too many clientIds", "/api/v1/events", many, "clientId"},
		{"invalid UTF-8", "/api/v1/events", "clientId=%FF", "clientId"},
		{"control character", "/api/v1/events", "clientId=a%00b", "clientId"},
		{"empty type", "/api/v1/events", "clientId=a&type=", "type"},
		{"bad from", "/api/v1/events", "clientId=a&from=yesterday", "from"},
		{"date without time", "/api/v1/events", "clientId=a&from=2026-01-01", "from"},
		{"bad to", "/api/v1/events", "clientId=a&to=2026-13-01T00:00:00Z", "to"},
		{"from after to", "/api/v1/events", "clientId=a&from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "to"},
		{"from twice", "/api/v1/events", "clientId=a&from=2026-01-01T00:00:00Z&from=2026-01-02T00:00:00Z", "from"},
		{"limit zero", "/api/v1/events", "clientId=a&limit=0", "limit"},
		{"limit too big", "/api/v1/events", "clientId=a&limit=1001", "limit"},
		{"limit not a number", "/api/v1/events", "clientId=a&limit=ten", "limit"},
		{"order", "/api/v1/events", "clientId=a&order=up", "order"},
		{"cursor garbage", "/api/v1/events", "clientId=a&cursor=abc", "cursor"},
		{"cursor not base64", "/api/v1/events", "clientId=a&cursor=%2A%2A%2A", "cursor"},
		{"unknown parameter", "/api/v1/events", "clientId=a&client=b", "client"},
		{"misspelt parameter", "/api/v1/events", "clientid=a", "clientid"},
		{"malformed escape", "/api/v1/events", "clientId=%zz", "query"},
		{"semicolon", "/api/v1/events", "clientId=a;limit=5", "query"},
		{"count without clientId", "/api/v1/events/count", "", "clientId"},
		{"count with limit", "/api/v1/events/count", "clientId=a&limit=5", "limit"},
		{"count bad to", "/api/v1/events/count", "clientId=a&to=now", "to"},
		{"stream without clientId", "/api/v1/events/stream", "type=x", "clientId"},
		{"stream with from", "/api/v1/events/stream", "clientId=a&from=2026-01-01T00:00:00Z", "from"},
		{"get with a parameter", "/api/v1/events/some-id", "pretty=1", "pretty"},
		{"get with a long id", "/api/v1/events/" + strings.Repeat("i", 513), "", "id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := http.Get(srv.URL + tc.path + "?" + tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var body errorBody
			if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != http.StatusBadRequest || res.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d %q, want a 400 JSON error", res.StatusCode, res.Header.Get("Content-Type"))
			}
			if body.Error.Code != "invalid_request" || !slices.Contains(body.fields(), tc.field) {
				t.Fatalf("error %+v does not name %q", body.Error, tc.field)
			}
			for _, d := range body.Error.Details {
				if d.Index != nil {
					t.Errorf("detail %+v: a parameter's problem has no index", d)
				}
			}
			if !strings.Contains(body.Error.Message, body.Error.Details[0].Field) {
				t.Errorf("message %q does not name the parameter", body.Error.Message)
			}
		})
	}
}

func TestValidQueryReachesTheStore(t *testing.T) {
	store := &fakeStore{t: t, page: func(event.PageQuery) ([]event.Event, error) { return nil, nil }}
	srv := startServer(t, store, nil, testConfig())
	var body listBody
	q := url.Values{"clientId": {"a", "b OR c"}, "type": {"t1"}, "order": {"desc"}, "limit": {"7"}}
	if code := srv.get(t, "/api/v1/events", q, &body); code != 200 {
		t.Fatalf("status %d", code)
	}
	if body.Events == nil || len(body.Events) != 0 || body.NextCursor != nil {
		t.Fatalf("empty page: %+v (events must be [], nextCursor absent)", body)
	}
	got := store.lastPage()
	if !slices.Equal(got.ClientIDs, []string{"a", "b OR c"}) || !slices.Equal(got.Types, []string{"t1"}) || !got.Desc || got.Size != 8 || got.After != nil {
		t.Fatalf("store got %+v (size must be limit+1)", got)
	}

	// An empty range [from, from) is a question with an empty answer, not an error.
	at := "2026-01-01T00:00:00Z"
	if code := srv.get(t, "/api/v1/events", url.Values{"clientId": {"a"}, "from": {at}, "to": {at}}, &body); code != 200 || len(body.Events) != 0 {
		t.Fatalf("from == to: status %d, %+v", code, body)
	}
	if got := store.lastPage(); !got.From.Equal(got.To) || got.From.IsZero() {
		t.Fatalf("from == to: store got %+v", got)
	}

	// Defaults, and a zone offset whose '+' arrived unescaped (as a space).
	res, err := http.Get(srv.URL + "/api/v1/events?clientId=a&from=2026-01-01T10:00:00+02:00&to=2026-01-01T09:00:00.5Z")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	got = store.lastPage()
	if !got.From.Equal(time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC)) || !got.To.Equal(time.Date(2026, 1, 1, 9, 0, 0, 5e8, time.UTC)) ||
		got.Size != 101 || got.Desc {
		t.Fatalf("store got %+v", got)
	}
}

// TestLimitAtTheResultWindow: with search.max_limit at Elasticsearch's 10,000-hit window, a
// page of 10,000 asks for exactly 10,000 and a full page carries a cursor.
func TestLimitAtTheResultWindow(t *testing.T) {
	all := fakeEvents("a", 10000)
	store := &fakeStore{t: t, page: func(q event.PageQuery) ([]event.Event, error) {
		if q.After != nil {
			return nil, nil
		}
		return all[:min(q.Size, len(all))], nil
	}}
	cfg := testConfig()
	cfg.MaxLimit = 10000
	srv := startServer(t, store, nil, cfg)
	var body listBody
	if code := srv.get(t, "/api/v1/events", url.Values{"clientId": {"a"}, "limit": {"10000"}}, &body); code != 200 {
		t.Fatalf("status %d", code)
	}
	if got := store.lastPage().Size; got != 10000 || len(body.Events) != 10000 || body.NextCursor == nil {
		t.Fatalf("size %d, %d events, cursor %v", got, len(body.Events), body.NextCursor)
	}
	var after listBody
	if code := srv.get(t, "/api/v1/events", url.Values{"clientId": {"a"}, "limit": {"10000"}, "cursor": {*body.NextCursor}}, &after); code != 200 || len(after.Events) != 0 || after.NextCursor != nil {
		t.Fatalf("page after: %d %d events %v", code, len(after.Events), after.NextCursor)
	}
	var short listBody
	if code := srv.get(t, "/api/v1/events", url.Values{"clientId": {"a"}, "limit": {"9999"}}, &short); code != 200 || store.lastPage().Size != 10000 || short.NextCursor == nil {
		t.Fatalf("limit 9999: %d size %d", code, store.lastPage().Size)
	}
}

// fakeEvents returns n events of client c, one microsecond apart, sorted.
func fakeEvents(c string, n int) []event.Event {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	out := make([]event.Event, n)
	for i := range out {
		e := event.Event{ID: fmt.Sprintf("e%04d", i), ClientID: c, Timestamp: t0.Add(time.Duration(i) * time.Microsecond), IngestedAt: t0}
		out[i] = e
	}
	return out
}

func TestCursorIsSignedAndBoundToTheQuery(t *testing.T) {
	all := fakeEvents("a", 25)
	store := &fakeStore{t: t, page: func(q event.PageQuery) ([]event.Event, error) {
		i := 0
		if q.After != nil {
			for i < len(all) && (all[i].Timestamp.Before(q.After.Timestamp) || all[i].Timestamp.Equal(q.After.Timestamp) && all[i].ID <= q.After.ID) {
				i++
			}
		}
		return all[i:min(i+q.Size, len(all))], nil
	}}
	srv := startServer(t, store, nil, testConfig())
	base := url.Values{"clientId": {"a"}, "limit": {"10"}, "from": {"2025-12-31T00:00:00Z"}}
	var ids []string
	var first string
	q := base
	for page := 0; ; page++ {
		var body listBody
		if code := srv.get(t, "/api/v1/events", q, &body); code != 200 {
			t.Fatalf("page %d: status %d", page, code)
		}
		for _, e := range body.Events {
			ids = append(ids, e.ID)
		}
		if body.NextCursor == nil {
			break
		}
		if page == 0 {
			first = *body.NextCursor
		}
		q = url.Values{"clientId": {"a"}, "limit": {"10"}, "from": {"2025-12-31T00:00:00Z"}, "cursor": {*body.NextCursor}}
	}
	if len(ids) != 25 || ids[0] != "e0000" || ids[24] != "e0024" {
		t.Fatalf("paged %v", ids)
	}

	// The same query in another spelling (other limit, clientIds repeated, same instant in
	// another zone) accepts the cursor.
	ok := url.Values{"clientId": {"a", "a"}, "limit": {"3"}, "from": {"2025-12-31T01:00:00+01:00"}, "cursor": {first}}
	if code := srv.get(t, "/api/v1/events", ok, nil); code != 200 {
		t.Fatalf("equivalent query refused the cursor: %d", code)
	}

	tampered := []byte(first)
	tampered[len(tampered)/2] ^= 1
	bad := map[string]url.Values{
		"tampered":       {"clientId": {"a"}, "from": {"2025-12-31T00:00:00Z"}, "cursor": {string(tampered)}},
		"truncated":      {"clientId": {"a"}, "from": {"2025-12-31T00:00:00Z"}, "cursor": {first[:len(first)-2]}},
		"other client":   {"clientId": {"b"}, "from": {"2025-12-31T00:00:00Z"}, "cursor": {first}},
		"more clients":   {"clientId": {"a", "b"}, "from": {"2025-12-31T00:00:00Z"}, "cursor": {first}},
		"other order":    {"clientId": {"a"}, "from": {"2025-12-31T00:00:00Z"}, "order": {"desc"}, "cursor": {first}},
		"other from":     {"clientId": {"a"}, "from": {"2025-12-30T00:00:00Z"}, "cursor": {first}},
		"added to":       {"clientId": {"a"}, "from": {"2025-12-31T00:00:00Z"}, "to": {"2027-01-01T00:00:00Z"}, "cursor": {first}},
		"added type":     {"clientId": {"a"}, "from": {"2025-12-31T00:00:00Z"}, "type": {"x"}, "cursor": {first}},
		"from dropped":   {"clientId": {"a"}, "cursor": {first}},
		"other key":      nil, // below
		"cursor doubled": {"clientId": {"a"}, "from": {"2025-12-31T00:00:00Z"}, "cursor": {first, first}},
	}
	other := testConfig()
	other.CursorKey = "another-key-of-another-deployment"
	otherSrv := startServer(t, store, nil, other)
	for name, q := range bad {
		target := srv
		if q == nil {
			target, q = otherSrv, url.Values{"clientId": {"a"}, "from": {"2025-12-31T00:00:00Z"}, "cursor": {first}}
		}
		var body errorBody
		if code := target.get(t, "/api/v1/events", q, &body); code != 400 || !slices.Contains(body.fields(), "cursor") {
			t.Errorf("%s: status %d %+v, want 400 naming cursor", name, code, body)
		}
	}
}

func TestCountGetAndStoreErrors(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	store := &fakeStore{t: t,
		count: func(f event.Filter) (int64, error) {
			if f.ClientIDs[0] == "down" {
				return 0, fmt.Errorf("count: %w", event.ErrUnavailable)
			}
			return 42, nil
		},
		getFn: func(id string) (event.Event, error) {
			if id == "known" {
				return event.Event{ID: id, ClientID: "c", Type: "t", Timestamp: ts, IngestedAt: ts, Payload: json.RawMessage(`{"k":1}`)}, nil
			}
			return event.Event{}, fmt.Errorf("get: %w", event.ErrNotFound)
		},
		page: func(event.PageQuery) ([]event.Event, error) { return nil, context.DeadlineExceeded },
	}
	srv := startServer(t, store, nil, testConfig())

	var c struct{ Count int64 }
	if code := srv.get(t, "/api/v1/events/count", url.Values{"clientId": {"a"}}, &c); code != 200 || c.Count != 42 {
		t.Fatalf("count: %d %+v", code, c)
	}
	var e apiEvent
	if code := srv.get(t, "/api/v1/events/known", nil, &e); code != 200 {
		t.Fatalf("get: %d", code)
	}
	if e.ID != "known" || e.Timestamp != "2026-01-02T03:04:05.000006Z" || e.IngestedAt != e.Timestamp || string(e.Payload) != `{"k":1}` {
		t.Fatalf("get: %+v", e)
	}
	var eb errorBody
	if code := srv.get(t, "/api/v1/events/unknown", nil, &eb); code != 404 || eb.Error.Code != "not_found" {
		t.Fatalf("missing event: %d %+v", code, eb)
	}
	if code := srv.get(t, "/api/v1/events/count", url.Values{"clientId": {"down"}}, &eb); code != 503 || eb.Error.Code != "unavailable" {
		t.Fatalf("unavailable store: %d %+v", code, eb)
	}
	if code := srv.get(t, "/api/v1/events", url.Values{"clientId": {"a"}}, &eb); code != 503 {
		t.Fatalf("query timeout: %d %+v", code, eb)
	}
}
