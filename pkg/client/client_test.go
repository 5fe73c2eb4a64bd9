package client

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestPostRetriesUntilStored: 503 and 429 are retried no sooner than their Retry-After, a lost
// reply with backoff, and every attempt carries the same ids and timestamps — assigned once,
// before the first — so the last attempt finds the events the lost reply's attempt stored.
func TestPostRetriesUntilStored(t *testing.T) {
	f := &ingestFake{answer: func(n int, p posted, w http.ResponseWriter) {
		switch n {
		case 1:
			refuse(w, 503, "unavailable", "Elasticsearch is unreachable", "2")
		case 2:
			refuse(w, 429, "overloaded", "too many events in flight", "7")
		case 3:
			hangUp(w)
		default:
			storedDup(w, p, 2)
		}
	}}
	var mu sync.Mutex
	var attempts []Attempt
	c, clk := newClient(t, startFake(t, f), Options{OnAttempt: func(a Attempt) {
		mu.Lock()
		attempts = append(attempts, a)
		mu.Unlock()
	}})
	assigned := clk.now()
	events := []Event{{ClientID: "c1", Type: "click"}, {ClientID: "c2", Payload: []byte(`{"a": [1, "<b>"]}`)}}
	res, err := c.Post(context.Background(), events)
	if err != nil {
		t.Fatal(err)
	}
	reqs := f.requests()
	if len(reqs) != 4 || res.Accepted != 2 || res.Duplicates != 2 {
		t.Fatalf("%d requests, result %+v; want 4 requests and 2 accepted, 2 duplicates", len(reqs), res)
	}
	for i, r := range reqs[1:] {
		if !bytes.Equal(r.Body, reqs[0].Body) {
			t.Errorf("attempt %d sent\n%s\nattempt 1 sent\n%s", i+2, r.Body, reqs[0].Body)
		}
	}
	for i, e := range events {
		id, err := uuid.Parse(e.ID)
		if err != nil || id.Version() != 7 {
			t.Errorf("event %d: id %q is not a UUIDv7 (%v)", i, e.ID, err)
		}
		if !e.Timestamp.Equal(assigned) || reqs[0].Events[i].ID != e.ID || reqs[0].Events[i].Timestamp != "2026-03-09T23:59:59.000000Z" {
			t.Errorf("event %d: %+v, sent %+v", i, e, reqs[0].Events[i])
		}
	}
	if got := string(reqs[0].Events[1].Payload); got != `{"a":[1,"<b>"]}` {
		t.Errorf("payload sent as %s: compacted, but nothing else changed", got)
	}

	slept := clk.sleeps()
	if len(slept) != 3 {
		t.Fatalf("slept %v, want 3 delays", slept)
	}
	within(t, "after 503 Retry-After: 2", slept[0], 2*time.Second, 2400*time.Millisecond)
	within(t, "after 429 Retry-After: 7", slept[1], 7*time.Second, 8400*time.Millisecond)
	within(t, "third backoff step (400ms, upper half)", slept[2], 200*time.Millisecond, 400*time.Millisecond)

	var statuses []int
	for i, a := range attempts {
		statuses = append(statuses, a.Status)
		if a.N != i+1 || a.Op != "post" || a.Events != 2 || (a.Err == nil) != (i == 3) {
			t.Errorf("attempt %d observed as %+v", i+1, a)
		}
	}
	if want := []int{503, 429, 0, 201}; !equal(statuses, want) {
		t.Errorf("observed statuses %v, want %v", statuses, want)
	}
}

func within(t *testing.T, what string, d, lo, hi time.Duration) {
	t.Helper()
	if d < lo || d > hi {
		t.Errorf("%s: waited %s, want %s to %s", what, d, lo, hi)
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestPostNeverRetriesOther4xx: a request that cannot succeed as it is is sent once, and its
// error carries the envelope (code, message, details naming event and field).
func TestPostNeverRetriesOther4xx(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
	}{
		{400, "invalid_request"}, {401, "unauthenticated"}, {403, "forbidden"}, {404, "not_found"},
		{413, "too_large"}, {415, "unsupported_media_type"}, {500, "internal"},
	} {
		t.Run(tc.code, func(t *testing.T) {
			f := &ingestFake{answer: func(n int, p posted, w http.ResponseWriter) {
				refuse(w, tc.status, tc.code, "no", "", FieldError{Index: 1, Field: "clientId", Message: "required"})
			}}
			c, clk := newClient(t, startFake(t, f), Options{})
			_, err := c.Post(context.Background(), []Event{{ClientID: "a"}, {}})
			var e *Error
			if !errors.As(err, &e) || e.Status != tc.status || e.Code != tc.code || len(e.Details) != 1 || e.Details[0].Index != 1 {
				t.Fatalf("error %v (%#v)", err, e)
			}
			if n := len(f.requests()); n != 1 || len(clk.sleeps()) != 0 {
				t.Fatalf("%d requests, slept %v; want exactly one attempt", n, clk.sleeps())
			}
		})
	}
}

// TestRetryGivesUp: retries stop before MaxElapsed would be exceeded, with the last error; a
// negative MaxElapsed sends once.
func TestRetryGivesUp(t *testing.T) {
	for _, tc := range []struct {
		maxElapsed time.Duration
		minReqs    int
	}{{10 * time.Second, 3}, {-1, 1}} {
		f := &ingestFake{answer: func(n int, p posted, w http.ResponseWriter) {
			refuse(w, 503, "unavailable", "down", "1")
		}}
		c, clk := newClient(t, startFake(t, f), Options{Retry: RetryPolicy{MaxElapsed: tc.maxElapsed}})
		_, err := c.Post(context.Background(), []Event{{ClientID: "a"}})
		var e *Error
		if !errors.As(err, &e) || e.Status != 503 {
			t.Fatalf("MaxElapsed %s: error %v, want the last 503", tc.maxElapsed, err)
		}
		var total time.Duration
		for _, d := range clk.sleeps() {
			total += d
		}
		if n := len(f.requests()); n < tc.minReqs || n != len(clk.sleeps())+1 || total > max(tc.maxElapsed, 0) {
			t.Fatalf("MaxElapsed %s: %d requests after sleeping %v", tc.maxElapsed, n, clk.sleeps())
		}
		if tc.minReqs > 1 && !strings.Contains(err.Error(), "gave up after") {
			t.Errorf("error %q does not say it gave up", err)
		}
	}
}

// TestBackoffIsCappedAndJittered: delays double up to MaxDelay, each drawn from the upper half
// of its step.
func TestBackoffIsCappedAndJittered(t *testing.T) {
	c, err := New(Options{Retry: RetryPolicy{InitialDelay: time.Second, MaxDelay: 8 * time.Second, MaxElapsed: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{}
	c.now = clk.now
	b := c.backoff()
	for i, step := range []time.Duration{1, 2, 4, 8, 8, 8} {
		d, ok := b.next(errors.New("connection reset"), 0)
		within(t, "step "+string(rune('1'+i)), d, step*time.Second/2, step*time.Second)
		if !ok {
			t.Fatal("gave up within MaxElapsed")
		}
	}
}

func TestRetryAfterHeader(t *testing.T) {
	now := time.Date(2026, 3, 9, 12, 0, 0, 0, time.UTC)
	for h, want := range map[string]time.Duration{
		"3": 3 * time.Second, "": 0, "-1": 0, "soon": 0,
		"Mon, 09 Mar 2026 12:00:30 GMT": 30 * time.Second, "Mon, 09 Mar 2026 11:00:00 GMT": 0,
	} {
		if got := retryAfter(h, now); got != want {
			t.Errorf("Retry-After %q: %s, want %s", h, got, want)
		}
	}
}

// TestPostOptions: gzip, the API key and the acknowledgement modes reach the request.
func TestPostOptions(t *testing.T) {
	for _, tc := range []struct {
		ack       Ack
		query     string
		status    int
		accepted  int
		duplicate int
	}{{AckDurable, "", 201, 1, 0}, {AckSearchable, "wait=searchable", 201, 1, 0}, {AckAsync, "ack=async", 202, 1, 0}} {
		f := &ingestFake{answer: func(n int, p posted, w http.ResponseWriter) {
			reply(w, tc.status, nil, map[string]any{"accepted": 1, "ids": []string{p.Events[0].ID}})
		}}
		c, _ := newClient(t, startFake(t, f), Options{Gzip: true, APIKey: "spw_secret", Ack: tc.ack})
		res, err := c.Post(context.Background(), []Event{{ID: "order-1", ClientID: "shop"}})
		if err != nil || res.Accepted != 1 || len(res.IDs) != 1 || res.IDs[0] != "order-1" {
			t.Fatalf("ack %d: %+v %v", tc.ack, res, err)
		}
		p := f.requests()[0]
		if p.Query != tc.query || p.Header.Get("Authorization") != "Bearer spw_secret" ||
			p.Header.Get("Content-Encoding") != "gzip" || p.Header.Get("Content-Type") != "application/x-ndjson" ||
			len(p.Events) != 1 || p.Events[0].ClientID != "shop" {
			t.Errorf("ack %d: request %q %v %+v", tc.ack, p.Query, p.Header, p.Events)
		}
	}
}

func TestNewRefusesBadURLs(t *testing.T) {
	for _, u := range []string{"localhost:8080", "ftp://x", "http://"} {
		if _, err := New(Options{IngestURL: u}); err == nil {
			t.Errorf("New accepted ingest URL %q", u)
		}
	}
}

func TestEncodeRefusesInvalidUTF8(t *testing.T) {
	c, _ := New(Options{})
	if _, err := c.Post(context.Background(), []Event{{ClientID: "a\xff"}}); err == nil || !strings.Contains(err.Error(), "clientId is not valid UTF-8") {
		t.Fatalf("error %v", err)
	}
}

// TestCertificateErrorsAreFinal: a certificate that does not verify will not verify next time.
func TestCertificateErrorsAreFinal(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake
	srv.StartTLS()
	defer srv.Close()
	c, clk := newClient(t, srv, Options{})
	if _, err := c.Count(context.Background(), Query{ClientIDs: []string{"a"}}); err == nil || len(clk.sleeps()) != 0 {
		t.Fatalf("error %v after sleeping %v", err, clk.sleeps())
	}
}
