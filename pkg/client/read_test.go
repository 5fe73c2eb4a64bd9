package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"
)

// searchFake serves pages of n events ("e0", "e1", ...) whose cursor is the next offset, and
// records every query.
type searchFake struct {
	mu      sync.Mutex
	queries []url.Values
	n       int
	fail    func(req int, w http.ResponseWriter) bool // answers instead, when it returns true
}

func (f *searchFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.queries = append(f.queries, r.URL.Query())
	req := len(f.queries)
	f.mu.Unlock()
	if f.fail != nil && f.fail(req, w) {
		return
	}
	switch r.URL.Path {
	case "/api/v1/events/count":
		reply(w, 200, nil, map[string]int{"count": f.n})
	case "/api/v1/events":
		q := r.URL.Query()
		limit, _ := strconv.Atoi(q.Get("limit"))
		from, _ := strconv.Atoi(q.Get("cursor"))
		page := map[string]any{"events": []Event{}}
		var events []Event
		for i := from; i < min(from+limit, f.n); i++ {
			events = append(events, Event{ID: fmt.Sprintf("e%d", i), ClientID: q.Get("clientId"),
				Timestamp: time.Date(2026, 3, 9, 0, 0, i, 0, time.UTC)})
		}
		if events != nil {
			page["events"] = events
		}
		if from+limit < f.n {
			page["nextCursor"] = strconv.Itoa(from + limit)
		}
		reply(w, 200, nil, page)
	default:
		if r.URL.Path == "/api/v1/events/order%2F1" || r.URL.RawPath == "/api/v1/events/order%2F1" {
			reply(w, 200, nil, Event{ID: "order/1", ClientID: "shop", Payload: []byte(`{"total":"59.90"}`)})
			return
		}
		refuse(w, 404, "not_found", "no event with this id", "")
	}
}

func (f *searchFake) recorded() []url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]url.Values(nil), f.queries...)
}

// TestEventsFollowsCursorsToTheEnd: every page is asked with the same query and the previous
// page's cursor, until a page has none; breaking out of the loop asks for no more.
func TestEventsFollowsCursorsToTheEnd(t *testing.T) {
	f := &searchFake{n: 7}
	c, _ := newClient(t, startFake(t, f), Options{})
	q := Query{ClientIDs: []string{"a", "b"}, Types: []string{"click"}, Desc: true, Limit: 3,
		From: time.Date(2026, 3, 9, 0, 0, 0, 0, time.FixedZone("CET", 3600)), To: time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)}
	var got []string
	for e, err := range c.Events(context.Background(), q) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e.ID)
	}
	if want := []string{"e0", "e1", "e2", "e3", "e4", "e5", "e6"}; !equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	queries := f.recorded()
	for i, q := range queries {
		cursor := ""
		if i > 0 {
			cursor = strconv.Itoa(3 * i)
		}
		want := url.Values{"clientId": {"a", "b"}, "type": {"click"}, "order": {"desc"}, "limit": {"3"},
			"from": {"2026-03-08T23:00:00Z"}, "to": {"2026-03-10T00:00:00Z"}}
		if cursor != "" {
			want["cursor"] = []string{cursor}
		}
		if q.Encode() != want.Encode() {
			t.Errorf("page %d asked %s, want %s", i+1, q.Encode(), want.Encode())
		}
	}
	if len(queries) != 3 {
		t.Errorf("%d pages asked, want 3", len(queries))
	}

	f.queries = nil
	for e := range c.Events(context.Background(), q) {
		if e.ID == "e3" {
			break
		}
	}
	if n := len(f.recorded()); n != 2 {
		t.Errorf("breaking after the first event of page 2: %d pages asked", n)
	}
}

// TestEventsEndsWithAnError: a page that fails for good ends the iteration with its error,
// after the events already returned; a 503 is retried.
func TestEventsEndsWithAnError(t *testing.T) {
	f := &searchFake{n: 7, fail: func(req int, w http.ResponseWriter) bool {
		switch req {
		case 2:
			refuse(w, 503, "unavailable", "query took longer than search.query_timeout", "1")
		case 4:
			refuse(w, 400, "invalid_request", "bad cursor", "", FieldError{Index: -1, Field: "cursor", Message: "signature mismatch"})
		default:
			return false
		}
		return true
	}}
	c, clk := newClient(t, startFake(t, f), Options{})
	var got []string
	var last error
	for e, err := range c.Events(context.Background(), Query{ClientIDs: []string{"a"}, Limit: 3}) {
		if err != nil {
			last = err
			continue
		}
		got = append(got, e.ID)
	}
	var e *Error
	if len(got) != 6 || !errors.As(last, &e) || e.Status != 400 || e.Details[0].Field != "cursor" || len(clk.sleeps()) != 1 {
		t.Fatalf("got %v, then %v; slept %v", got, last, clk.sleeps())
	}
}

func TestCountAndGet(t *testing.T) {
	f := &searchFake{n: 42}
	c, _ := newClient(t, startFake(t, f), Options{})
	ctx := context.Background()
	n, err := c.Count(ctx, Query{ClientIDs: []string{"a"}, Types: []string{"x"}, Desc: true, Limit: 5})
	if err != nil || n != 42 {
		t.Fatalf("count %d %v", n, err)
	}
	if q := f.recorded()[0]; q.Encode() != "clientId=a&type=x" {
		t.Errorf("count asked %s: order and limit do not apply", q.Encode())
	}
	e, err := c.Get(ctx, "order/1")
	if err != nil || e.ID != "order/1" || string(e.Payload) != `{"total":"59.90"}` {
		t.Fatalf("get: %+v %v", e, err)
	}
	if _, err := c.Get(ctx, "missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get missing: %v, want ErrNotFound", err)
	}
}
