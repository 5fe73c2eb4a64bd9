package client

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// clock is the tests' time: sleeping records the delay and moves the time on at once, so
// retry tests check every delay without waiting for any.
type clock struct {
	mu    sync.Mutex
	t     time.Time
	slept []time.Duration
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.slept = append(c.slept, d)
	c.t = c.t.Add(d)
	return nil
}

func (c *clock) sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.slept...)
}

// newClient is a client of srv (both services) on the tests' clock.
func newClient(t *testing.T, srv *httptest.Server, opts Options) (*Client, *clock) {
	t.Helper()
	opts.IngestURL, opts.SearchURL = srv.URL, srv.URL
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 3, 9, 23, 59, 59, 0, time.UTC)}
	c.now, c.sleep = clk.now, clk.sleep
	return c, clk
}

// posted is one request the fake ingest service received.
type posted struct {
	Header http.Header
	Query  string
	Body   []byte // as sent (gunzipped)
	Events []wireEvent
}

// ingestFake records posts and answers each with answer(n, request), n counting from 1.
type ingestFake struct {
	mu     sync.Mutex
	posts  []posted
	answer func(n int, p posted, w http.ResponseWriter)
}

func (f *ingestFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		body = zr
	}
	raw, _ := io.ReadAll(body)
	p := posted{Header: r.Header.Clone(), Query: r.URL.RawQuery, Body: raw}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		var e wireEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		p.Events = append(p.Events, e)
	}
	f.mu.Lock()
	f.posts = append(f.posts, p)
	n := len(f.posts)
	f.mu.Unlock()
	f.answer(n, p, w)
}

func (f *ingestFake) requests() []posted {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]posted(nil), f.posts...)
}

// stored answers 201 for every event of p, none a duplicate.
func stored(w http.ResponseWriter, p posted) { storedDup(w, p, 0) }

func storedDup(w http.ResponseWriter, p posted, dups int) {
	ids := make([]string, len(p.Events))
	for i, e := range p.Events {
		ids[i] = e.ID
	}
	reply(w, 201, nil, Result{Accepted: len(ids), Duplicates: dups, IDs: ids})
}

// refuse answers with the API's error envelope.
func refuse(w http.ResponseWriter, status int, code, msg string, retryAfter string, details ...FieldError) {
	h := http.Header{}
	if retryAfter != "" {
		h.Set("Retry-After", retryAfter)
	}
	reply(w, status, h, map[string]any{"error": map[string]any{"code": code, "message": msg, "details": details}})
}

func reply(w http.ResponseWriter, status int, h http.Header, v any) {
	for k, vs := range h {
		w.Header()[k] = vs
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// hangUp closes the connection without an answer: a lost reply.
func hangUp(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
}

func startFake(t *testing.T, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}
