package ingest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spillway/spillway/api/apitest"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/httpx"
)

// fakeWriter is a Writer whose behaviour each test scripts; by default every event is created.
type fakeWriter struct {
	mu     sync.Mutex
	calls  [][]event.Event
	search []bool
	closed bool
	delay  time.Duration // what QueueDelay reports
	write  func(ctx context.Context, events []event.Event) ([]event.Outcome, error)
}

func (f *fakeWriter) Write(ctx context.Context, events []event.Event, searchable bool) ([]event.Outcome, error) {
	f.mu.Lock()
	f.calls = append(f.calls, events)
	f.search = append(f.search, searchable)
	write := f.write
	f.mu.Unlock()
	if write != nil {
		return write(ctx, events)
	}
	return outcomes(len(events), event.Created), nil
}

func (f *fakeWriter) Flush(context.Context) error { return nil }

func (f *fakeWriter) QueueDelay() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.delay
}

func (f *fakeWriter) Close(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func (f *fakeWriter) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func outcomes(n int, r event.WriteResult) []event.Outcome {
	out := make([]event.Outcome, n)
	for i := range out {
		out[i] = event.Outcome{Result: r, Attempts: 1}
	}
	return out
}

// testConfig is the default ingest configuration with small limits.
func testConfig() config.Ingest {
	return config.Ingest{
		MaxBodyBytes: 64 << 10, MaxEvents: 100, MaxPayloadBytes: 4 << 10, MaxPayloadDepth: 20, MaxPayloadKeys: 100,
		MaxFutureSkew: 24 * time.Hour, MaxPastAge: 30 * 24 * time.Hour, AckTimeout: 5 * time.Second,
		InflightMaxBytes: 1 << 20, InflightMaxEvents: 1000, RetryAfter: 2 * time.Second,
	}
}

type rig struct {
	h   *Handler
	w   *fakeWriter
	mon *Monitor
	srv *httptest.Server
}

func newRig(t *testing.T, cfg config.Ingest) *rig {
	t.Helper()
	w := &fakeWriter{}
	mon := NewMonitor(prometheus.NewRegistry(), cfg.RetryAfter, nil)
	h := New(cfg, Options{Writer: w, Monitor: mon})
	r := httpx.NewRouter()
	httpx.Use(r, httpx.WithRequestID)
	h.Mount(r)
	srv := httptest.NewServer(apitest.Handler(t, apitest.Ingest, r))
	t.Cleanup(srv.Close)
	return &rig{h: h, w: w, mon: mon, srv: srv}
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) envelope(t *testing.T) httpx.EnvelopeError {
	t.Helper()
	var env httpx.Envelope
	if err := json.Unmarshal(r.body, &env); err != nil || env.Error.Code == "" {
		t.Fatalf("status %d, body %s: not an error envelope (%v)", r.status, r.body, err)
	}
	return env.Error
}

func (rg *rig) post(t *testing.T, query, contentType string, body []byte, hdr ...string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, rg.srv.URL+"/api/v1/events"+query, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(res.Body)
	return reply{res.StatusCode, res.Header, buf.Bytes()}
}

func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

const jsonCT, ndjsonCT = "application/json", "application/x-ndjson"

func TestPostBodyFormats(t *testing.T) {
	tests := []struct {
		name, ct string
		body     []byte
		gzip     bool
		clients  []string
	}{
		{"single object", jsonCT, []byte(`{"clientId":"a","id":"e1"}`), false, []string{"a"}},
		{"array", "application/json; charset=UTF-8", []byte(`[{"clientId":"a"},{"clientId":"b","id":"e2"}]`), false, []string{"a", "b"}},
		{"ndjson", ndjsonCT, []byte("{\"clientId\":\"a\"}\n{\"clientId\":\"b\"}\n{\"clientId\":\"c\"}\n"), false, []string{"a", "b", "c"}},
		{"gzip array", jsonCT, []byte(`[{"clientId":"a"},{"clientId":"b"}]`), true, []string{"a", "b"}},
		{"gzip ndjson", ndjsonCT, []byte("{\"clientId\":\"a\"}\n{\"clientId\":\"b\"}"), true, []string{"a", "b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rg := newRig(t, testConfig())
			body, hdr := tc.body, []string{}
			if tc.gzip {
				body, hdr = gz(t, body), []string{"Content-Encoding", "gzip"}
			}
			res := rg.post(t, "", tc.ct, body, hdr...)
			if res.status != http.StatusCreated {
				t.Fatalf("status %d: %s", res.status, res.body)
			}
			var got Response
			if err := json.Unmarshal(res.body, &got); err != nil {
				t.Fatal(err)
			}
			if rg.w.callCount() != 1 || rg.w.search[0] {
				t.Fatalf("writer calls %d, searchable %v", rg.w.callCount(), rg.w.search)
			}
			sent := rg.w.calls[0]
			if got.Accepted != len(tc.clients) || got.Duplicates != 0 || len(got.IDs) != len(tc.clients) {
				t.Fatalf("response %+v", got)
			}
			for i, c := range tc.clients {
				if sent[i].ClientID != c || sent[i].ID != got.IDs[i] || !event.ValidID(got.IDs[i]) {
					t.Errorf("event %d: sent %+v, id in response %q", i, sent[i], got.IDs[i])
				}
			}
			if bytes, events := rg.h.budget.used(); bytes != 0 || events != 0 {
				t.Errorf("budget not released: %d bytes, %d events", bytes, events)
			}
		})
	}
}

func TestPostRefusesWithoutWriting(t *testing.T) {
	cfg := testConfig()
	big := []byte(`[` + strings.Repeat(`{"clientId":"c"},`, 2000) + `{"clientId":"c"}]`)                    // > 64 KiB
	bomb := gz(t, append([]byte(`{"clientId":"c","payload":{"x":"`), bytes.Repeat([]byte("a"), 50<<20)...)) // 50 MiB of 'a'
	many := []byte(`[` + strings.TrimSuffix(strings.Repeat(`{"clientId":"c"},`, 101), ",") + `]`)
	tests := []struct {
		name, query, ct string
		body            []byte
		hdr             []string
		status          int
		code            string
		detail          *event.FieldError
	}{
		{"no content type", "", "", []byte(`{}`), nil, 415, "unsupported_media_type", nil},
		{"form content type", "", "application/x-www-form-urlencoded", []byte(`{}`), nil, 415, "unsupported_media_type", nil},
		{"latin1", "", "application/json; charset=latin1", []byte(`{}`), nil, 415, "unsupported_media_type", nil},
		{"brotli", "", jsonCT, []byte(`{}`), []string{"Content-Encoding", "br"}, 415, "unsupported_media_type", nil},
		{"body too large", "", jsonCT, big, nil, 413, "too_large", nil},
		{"gzip bomb", "", jsonCT, bomb, []string{"Content-Encoding", "gzip"}, 413, "too_large", nil},
		{"too many events", "", jsonCT, many, nil, 413, "too_large", nil},
		{"broken gzip", "", jsonCT, []byte("not gzip at all"), []string{"Content-Encoding", "gzip"}, 400, "invalid_request", nil},
		{"invalid JSON", "", jsonCT, []byte(`{"clientId":`), nil, 400, "invalid_request", &event.FieldError{Index: 0, Field: ""}},
		{"one bad event", "", jsonCT, []byte(`[{"clientId":"a"},{"clientId":"b"},{"clientId":"c"},{"clientid":"d"}]`), nil, 400, "invalid_request",
			&event.FieldError{Index: 3, Field: "clientid"}},
		{"bad wait", "?wait=forever", jsonCT, []byte(`{"clientId":"a"}`), nil, 400, "invalid_request", &event.FieldError{Index: -1, Field: "wait"}},
		{"async and searchable", "?wait=searchable&ack=async", jsonCT, []byte(`{"clientId":"a"}`), nil, 400, "invalid_request", &event.FieldError{Index: -1, Field: "ack"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rg := newRig(t, cfg)
			res := rg.post(t, tc.query, tc.ct, tc.body, tc.hdr...)
			if res.status != tc.status {
				t.Fatalf("status %d, want %d: %s", res.status, tc.status, res.body)
			}
			e := res.envelope(t)
			if e.Code != tc.code || e.Message == "" {
				t.Errorf("envelope %+v", e)
			}
			if tc.detail != nil {
				found := false
				for _, d := range e.Details {
					found = found || d.Index == tc.detail.Index && d.Field == tc.detail.Field && d.Message != ""
				}
				if !found {
					t.Errorf("details %+v lack index %d field %q", e.Details, tc.detail.Index, tc.detail.Field)
				}
			}
			if n := rg.w.callCount(); n != 0 {
				t.Errorf("writer called %d times for a refused request", n)
			}
			if bytes, events := rg.h.budget.used(); bytes != 0 || events != 0 {
				t.Errorf("budget not released: %d bytes, %d events", bytes, events)
			}
		})
	}
}

func TestPostMapsWriterOutcomes(t *testing.T) {
	body := []byte(`[{"clientId":"a","id":"x"},{"clientId":"b","id":"y"},{"clientId":"c","id":"z"}]`)
	t.Run("duplicates are a success", func(t *testing.T) {
		rg := newRig(t, testConfig())
		rg.w.write = func(ctx context.Context, evs []event.Event) ([]event.Outcome, error) {
			out := outcomes(len(evs), event.Created)
			out[1].Result = event.Duplicate
			return out, nil
		}
		res := rg.post(t, "", jsonCT, body)
		var got Response
		_ = json.Unmarshal(res.body, &got)
		if res.status != 201 || got.Accepted != 3 || got.Duplicates != 1 || strings.Join(got.IDs, ",") != "x,y,z" {
			t.Fatalf("%d %s", res.status, res.body)
		}
		m := rg.mon.metrics.events
		if testutil.ToFloat64(m.WithLabelValues("accepted", "sync")) != 2 || testutil.ToFloat64(m.WithLabelValues("duplicated", "sync")) != 1 {
			t.Error("event counters not updated")
		}
	})
	t.Run("elasticsearch rejections name the events", func(t *testing.T) {
		rg := newRig(t, testConfig())
		rg.w.write = func(ctx context.Context, evs []event.Event) ([]event.Outcome, error) {
			out := outcomes(len(evs), event.Created)
			out[2] = event.Outcome{Result: event.Rejected, Status: 400, Reason: "document_parsing_exception: nope"}
			return out, nil
		}
		res := rg.post(t, "", jsonCT, body)
		e := res.envelope(t)
		if res.status != 400 || e.Code != "rejected" || len(e.Details) != 1 || e.Details[0].Index != 2 ||
			!strings.Contains(e.Details[0].Message, "document_parsing_exception") || !strings.Contains(e.Message, "the other 2 are stored") {
			t.Fatalf("%d %s", res.status, res.body)
		}
	})
	t.Run("deadline is 503 with Retry-After", func(t *testing.T) {
		cfg := testConfig()
		cfg.AckTimeout = 50 * time.Millisecond
		rg := newRig(t, cfg)
		rg.w.write = func(ctx context.Context, evs []event.Event) ([]event.Outcome, error) {
			<-ctx.Done() // a writer that never hears back from Elasticsearch
			return outcomes(len(evs), event.Pending), fmt.Errorf("%w: %w", event.ErrUnavailable, context.Cause(ctx))
		}
		res := rg.post(t, "", jsonCT, body)
		e := res.envelope(t)
		if res.status != 503 || res.header.Get("Retry-After") != "2" || !strings.Contains(e.Message, "ingest.ack_timeout") {
			t.Fatalf("%d %v %s", res.status, res.header, res.body)
		}
		if testutil.ToFloat64(rg.mon.metrics.refused.WithLabelValues("503", "deadline")) != 1 {
			t.Error("503 not counted")
		}
	})
	t.Run("deadline names Elasticsearch's reason", func(t *testing.T) {
		cfg := testConfig()
		cfg.AckTimeout = 50 * time.Millisecond
		rg := newRig(t, cfg)
		rg.w.write = func(ctx context.Context, evs []event.Event) ([]event.Outcome, error) {
			<-ctx.Done() // every attempt answered with a block until the deadline
			out := outcomes(len(evs), event.Pending)
			out[1].Status, out[1].Reason = 403, "cluster_block_exception: index [e-2026.01.01] blocked by: [FORBIDDEN/8/index write (api)]"
			out[2].Reason = "dial tcp 10.0.0.7:9200: connect: connection refused" // no status: not Elasticsearch's answer
			return out, fmt.Errorf("%w: %w", event.ErrUnavailable, context.Cause(ctx))
		}
		res := rg.post(t, "", jsonCT, body)
		e := res.envelope(t)
		if res.status != 503 || !strings.Contains(e.Message, "Elasticsearch answered: cluster_block_exception") || strings.Contains(e.Message, "10.0.0.7") {
			t.Fatalf("%d %s", res.status, res.body)
		}
	})
	t.Run("a client that leaves is counted 499, not answered 503", func(t *testing.T) {
		rg := newRig(t, testConfig())
		waiting := make(chan struct{})
		rg.w.write = func(ctx context.Context, evs []event.Event) ([]event.Outcome, error) {
			close(waiting)
			<-ctx.Done() // the client's request context, ended by its going away
			return outcomes(len(evs), event.Pending), fmt.Errorf("%w: %w", event.ErrUnavailable, context.Cause(ctx))
		}
		ctx, cancel := context.WithCancel(context.Background())
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, rg.srv.URL+"/api/v1/events", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", jsonCT)
		done := make(chan error, 1)
		go func() {
			res, err := http.DefaultClient.Do(req)
			if err == nil {
				res.Body.Close()
			}
			done <- err
		}()
		<-waiting
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("client: %v", err)
		}
		rg.srv.Close() // waits for the handler
		m := rg.mon.metrics.refused
		if got, wrong := testutil.ToFloat64(m.WithLabelValues("499", "client_gone")), testutil.ToFloat64(m.WithLabelValues("503", "client_gone")); got != 1 || wrong != 0 {
			t.Fatalf("refused{499,client_gone} = %v, {503,client_gone} = %v; want 1, 0", got, wrong)
		}
	})
	t.Run("unavailable writer is 503", func(t *testing.T) {
		rg := newRig(t, testConfig())
		rg.w.write = func(ctx context.Context, evs []event.Event) ([]event.Outcome, error) {
			return outcomes(len(evs), event.Pending), fmt.Errorf("closed: %w", event.ErrUnavailable)
		}
		if res := rg.post(t, "", jsonCT, body); res.status != 503 || res.envelope(t).Code != "unavailable" {
			t.Fatalf("%d %s", res.status, res.body)
		}
	})
	t.Run("writer failing before sending is 503", func(t *testing.T) {
		rg := newRig(t, testConfig())
		rg.w.write = func(ctx context.Context, evs []event.Event) ([]event.Outcome, error) {
			return nil, errors.New("encode: broken")
		}
		if res := rg.post(t, "", jsonCT, body); res.status != 503 {
			t.Fatalf("%d %s", res.status, res.body)
		}
		if got := testutil.ToFloat64(rg.mon.metrics.events.WithLabelValues("failed", "sync")); got != 3 {
			t.Errorf("failed events counted: %v", got)
		}
	})
	t.Run("searchable", func(t *testing.T) {
		rg := newRig(t, testConfig())
		if res := rg.post(t, "?wait=searchable", jsonCT, body); res.status != 201 || !rg.w.search[0] {
			t.Fatalf("%d %s searchable=%v", res.status, res.body, rg.w.search)
		}
	})
	t.Run("not ready", func(t *testing.T) {
		cfg := testConfig()
		w := &fakeWriter{}
		mon := NewMonitor(prometheus.NewRegistry(), time.Second, nil)
		h := New(cfg, Options{Writer: w, Monitor: mon, Ready: func() error { return errors.New("template missing") }})
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/api/v1/events", strings.NewReader(`{"clientId":"a"}`))
		req.Header.Set("Content-Type", jsonCT)
		h.Post(rec, req)
		if rec.Code != 503 || w.callCount() != 0 {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
	})
}

func TestBudgetRefusesWith429(t *testing.T) {
	cfg := testConfig()
	cfg.InflightMaxEvents = 150 // one request of 100 fits, two do not
	rg := newRig(t, cfg)
	release := make(chan struct{})
	entered := make(chan struct{}, 10)
	rg.w.write = func(ctx context.Context, evs []event.Event) ([]event.Outcome, error) {
		entered <- struct{}{}
		<-release
		return outcomes(len(evs), event.Created), nil
	}
	hundred := []byte(strings.Repeat(`{"clientId":"c"}`+"\n", 100))
	first := make(chan reply, 1)
	go func() { first <- rg.post(t, "", ndjsonCT, hundred) }()
	<-entered
	if _, events := rg.h.budget.used(); events != 100 || testutil.ToFloat64(rg.mon.metrics.inflightEvs) != 100 {
		t.Fatalf("in flight: %d events", events)
	}
	res := rg.post(t, "", ndjsonCT, hundred)
	if res.status != 429 || res.header.Get("Retry-After") != "2" || res.envelope(t).Code != "overloaded" {
		t.Fatalf("second request: %d %s", res.status, res.body)
	}
	close(release)
	if r := <-first; r.status != 201 {
		t.Fatalf("first request: %d %s", r.status, r.body)
	}
	if testutil.ToFloat64(rg.mon.metrics.refused.WithLabelValues("429", "budget")) != 1 {
		t.Error("429 not counted")
	}
	if bytes, events := rg.h.budget.used(); bytes != 0 || events != 0 {
		t.Errorf("budget not released: %d bytes, %d events", bytes, events)
	}
}

func TestBudgetBoundsBodyBytes(t *testing.T) {
	cfg := testConfig()
	cfg.InflightMaxBytes = 100 << 10 // room for one 64 KiB body, not two
	rg := newRig(t, cfg)
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	rg.w.write = func(ctx context.Context, evs []event.Event) ([]event.Outcome, error) {
		entered <- struct{}{}
		<-release
		return outcomes(len(evs), event.Created), nil
	}
	body := []byte(`{"clientId":"c","payload":{"x":"` + strings.Repeat("a", 60<<10) + `"}}`)
	cfg.MaxPayloadBytes = 64 << 10
	rg.h.limits.MaxPayloadBytes = 64 << 10
	first := make(chan reply, 1)
	go func() { first <- rg.post(t, "", jsonCT, body) }()
	<-entered
	if res := rg.post(t, "", jsonCT, body); res.status != 429 {
		t.Fatalf("second large body: %d %s", res.status, res.body)
	}
	close(release)
	if r := <-first; r.status != 201 {
		t.Fatalf("first: %d %s", r.status, r.body)
	}
}

func TestBreakerAnswers503AtOnceAndRecovers(t *testing.T) {
	cfg := testConfig()
	rg := newRig(t, cfg)
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var clockMu sync.Mutex
	rg.mon.breaker.now = func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return clock }
	advance := func(d time.Duration) { clockMu.Lock(); clock = clock.Add(d); clockMu.Unlock() }

	// A request waiting for an acknowledgement when Elasticsearch goes away answers 503 as soon
	// as the breaker opens, not at its deadline.
	waiting := make(chan struct{}, 1)
	rg.w.write = func(ctx context.Context, evs []event.Event) ([]event.Outcome, error) {
		waiting <- struct{}{}
		<-ctx.Done()
		return outcomes(len(evs), event.Pending), fmt.Errorf("%w: %w", event.ErrUnavailable, context.Cause(ctx))
	}
	first := make(chan reply, 1)
	go func() { first <- rg.post(t, "", jsonCT, []byte(`{"clientId":"a"}`)) }()
	<-waiting
	down := event.Flush{Err: errors.New("dial tcp: connection refused")}
	rg.mon.ObserveFlush(event.Flush{Status: 200}) // a success in between resets the count
	for i := 0; i < breakerThreshold; i++ {
		if rg.mon.breaker.isOpen() {
			t.Fatalf("open after %d failures", i)
		}
		rg.mon.ObserveFlush(down)
	}
	if !rg.mon.breaker.isOpen() || testutil.ToFloat64(rg.mon.metrics.breakerOpen) != 1 {
		t.Fatal("breaker not open after consecutive failures")
	}
	if r := <-first; r.status != 503 || !strings.Contains(r.envelope(t).Message, "unreachable") {
		t.Fatalf("waiting request: %d %s", r.status, r.body)
	}

	// While open: 503 without reading the body or calling the writer.
	calls := rg.w.callCount()
	for i := 0; i < 5; i++ {
		if r := rg.post(t, "", jsonCT, []byte(`{"clientId":"a"}`)); r.status != 503 || r.header.Get("Retry-After") == "" {
			t.Fatalf("while open: %d %s", r.status, r.body)
		}
	}
	if rg.w.callCount() != calls {
		t.Fatal("writer called while the breaker is open")
	}

	// After the probe interval one request goes through; it fails, so the breaker stays open.
	advance(cfg.RetryAfter)
	var probes atomic.Int32
	rg.w.write = func(ctx context.Context, evs []event.Event) ([]event.Outcome, error) {
		probes.Add(1)
		rg.mon.ObserveFlush(down)
		<-ctx.Done()
		return outcomes(len(evs), event.Pending), fmt.Errorf("%w: %w", event.ErrUnavailable, context.Cause(ctx))
	}
	if r := rg.post(t, "", jsonCT, []byte(`{"clientId":"a"}`)); r.status != 503 || probes.Load() != 1 {
		t.Fatalf("failed probe: %d %s, %d probes", r.status, r.body, probes.Load())
	}
	if r := rg.post(t, "", jsonCT, []byte(`{"clientId":"a"}`)); r.status != 503 || probes.Load() != 1 {
		t.Fatalf("right after a failed probe: %d, %d probes", r.status, probes.Load())
	}

	// The next probe succeeds: the breaker closes and requests flow again.
	advance(cfg.RetryAfter)
	rg.w.write = func(ctx context.Context, evs []event.Event) ([]event.Outcome, error) {
		rg.mon.ObserveFlush(event.Flush{Status: 200})
		return outcomes(len(evs), event.Created), nil
	}
	for i := 0; i < 3; i++ {
		if r := rg.post(t, "", jsonCT, []byte(`{"clientId":"a"}`)); r.status != 201 {
			t.Fatalf("after recovery: %d %s", r.status, r.body)
		}
	}
	if rg.mon.breaker.isOpen() || testutil.ToFloat64(rg.mon.metrics.breakerOpen) != 0 {
		t.Fatal("breaker still open")
	}
}

func TestAsyncAckAndDrain(t *testing.T) {
	rg := newRig(t, testConfig())
	release := make(chan struct{})
	var written atomic.Int32
	rg.w.write = func(ctx context.Context, evs []event.Event) ([]event.Outcome, error) {
		select {
		case <-release:
		case <-ctx.Done():
			return outcomes(len(evs), event.Pending), context.Cause(ctx)
		}
		written.Add(int32(len(evs)))
		return outcomes(len(evs), event.Created), nil
	}
	for i := 0; i < 3; i++ {
		res := rg.post(t, "?ack=async", jsonCT, []byte(`[{"clientId":"a"},{"clientId":"b"}]`))
		var got AsyncResponse
		if err := json.Unmarshal(res.body, &got); err != nil || res.status != 202 || got.Accepted != 2 || len(got.IDs) != 2 {
			t.Fatalf("%d %s", res.status, res.body)
		}
	}
	if _, events := rg.h.budget.used(); events != 6 {
		t.Fatalf("async events not held in the budget: %d", events)
	}
	drained := make(chan error, 1)
	go func() { drained <- rg.h.Drain(context.Background()) }()
	// Drain must wait for the writes it promised.
	select {
	case err := <-drained:
		t.Fatalf("Drain returned before the async writes finished: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if res := rg.post(t, "?ack=async", jsonCT, []byte(`{"clientId":"late"}`)); res.status != 503 {
		t.Fatalf("async while draining: %d", res.status)
	}
	close(release)
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
	if written.Load() != 6 || !rg.w.closed {
		t.Fatalf("written %d, writer closed %v", written.Load(), rg.w.closed)
	}
	if testutil.ToFloat64(rg.mon.metrics.events.WithLabelValues("accepted", "async")) != 6 {
		t.Error("async events not counted")
	}
}

func TestAsyncFailuresAreCountedAndDrainIsBounded(t *testing.T) {
	rg := newRig(t, testConfig())
	rg.w.write = func(ctx context.Context, evs []event.Event) ([]event.Outcome, error) {
		<-ctx.Done()
		return outcomes(len(evs), event.Pending), fmt.Errorf("%w: %w", event.ErrUnavailable, context.Cause(ctx))
	}
	if res := rg.post(t, "?ack=async", jsonCT, []byte(`[{"clientId":"a"},{"clientId":"b"}]`)); res.status != 202 {
		t.Fatalf("%d %s", res.status, res.body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := rg.h.Drain(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain = %v, want the grace to run out", err)
	}
	if got := testutil.ToFloat64(rg.mon.metrics.events.WithLabelValues("failed", "async")); got != 2 {
		t.Fatalf("failed async events counted: %v", got)
	}
	if bytes, events := rg.h.budget.used(); bytes != 0 || events != 0 {
		t.Errorf("budget not released: %d bytes, %d events", bytes, events)
	}
}

func TestSlowBodyIs408(t *testing.T) {
	w := &fakeWriter{}
	mon := NewMonitor(prometheus.NewRegistry(), time.Second, nil)
	h := New(testConfig(), Options{Writer: w, Monitor: mon})
	r := httpx.NewRouter()
	httpx.Use(r, httpx.WithRequestID)
	h.Mount(r)
	srv := httptest.NewUnstartedServer(apitest.Handler(t, apitest.Ingest, r))
	srv.Config.ReadTimeout = 200 * time.Millisecond // slow-loris protection, as http.read_timeout
	srv.Start()
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Headers promise 100 bytes; a quarter arrives, then nothing.
	fmt.Fprint(conn, "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"clientId\":\"slow\",")
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestTimeout || w.callCount() != 0 {
		t.Fatalf("status %d, writer calls %d", res.StatusCode, w.callCount())
	}
	if bytes, events := h.budget.used(); bytes != 0 || events != 0 {
		t.Errorf("budget not released: %d bytes, %d events", bytes, events)
	}
}
