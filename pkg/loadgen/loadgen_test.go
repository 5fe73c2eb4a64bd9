package loadgen

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 1000; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	p := Summarize(d)
	if p.N != 1000 || p.P50 != 500 || p.P90 != 900 || p.P99 != 990 || p.P999 != 999 || p.Max != 1000 {
		t.Fatalf("%+v", p)
	}
	if (Summarize(nil) != Percentiles{}) {
		t.Fatal("empty sample")
	}
}

// fakeIngest records the bodies it receives and answers like ingest does.
type fakeIngest struct {
	mu     sync.Mutex
	events int
	ids    map[string]bool
	delay  time.Duration
	status int
}

func (f *fakeIngest) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var evs []map[string]any
	if strings.HasPrefix(string(b), "[") {
		_ = json.Unmarshal(b, &evs)
	} else {
		var e map[string]any
		_ = json.Unmarshal(b, &e)
		evs = append(evs, e)
	}
	time.Sleep(f.delay)
	f.mu.Lock()
	for _, e := range evs {
		f.ids[e["id"].(string)] = true
		if e["clientId"] == nil || e["payload"] == nil {
			panic("incomplete event")
		}
	}
	f.events += len(evs)
	f.mu.Unlock()
	w.WriteHeader(f.status)
}

func TestClosedLoopCountsAndRecordsAcks(t *testing.T) {
	f := &fakeIngest{ids: map[string]bool{}, status: 201}
	srv := httptest.NewServer(f)
	defer srv.Close()
	var acked strings.Builder
	var mu sync.Mutex
	res, err := Run(context.Background(), Config{IngestURL: srv.URL, Duration: 300 * time.Millisecond, Concurrency: 4,
		EventsPerRequest: 10, EventSize: 512, Clients: 3, AckedIDs: writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return acked.Write(p) })})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(acked.String())
	f.mu.Lock()
	defer f.mu.Unlock()
	if res.Events == 0 || int(res.Events) != len(lines) || res.Status["201"] != int(res.Requests) {
		t.Fatalf("result %+v, %d acked lines", res, len(lines))
	}
	for _, id := range lines {
		if !f.ids[id] {
			t.Fatalf("acked id %s never reached the server", id)
		}
	}
	if int(res.Events) > f.events {
		t.Fatalf("counted %d events, server saw %d", res.Events, f.events)
	}
}

func TestOpenLoopMeasuresFromIntendedTime(t *testing.T) {
	// One slot in flight and a server that takes 50 ms: requests at 100/s queue behind each
	// other, and their latency must include the queueing, growing far beyond 50 ms.
	f := &fakeIngest{ids: map[string]bool{}, status: 201, delay: 50 * time.Millisecond}
	srv := httptest.NewServer(f)
	defer srv.Close()
	res, err := Run(context.Background(), Config{IngestURL: srv.URL, Duration: 600 * time.Millisecond, Rate: 100, Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Mode != "open-loop" || res.Requests < 3 {
		t.Fatalf("%+v", res)
	}
	// The k-th request waited for k-1 predecessors: the maximum is several service times.
	if res.Latency.Max < 3*50 {
		t.Fatalf("max latency %.1f ms hides the queueing (coordinated omission)", res.Latency.Max)
	}
}

func TestErrorsAreCountedByStatus(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if n.Add(1)%2 == 0 {
			w.WriteHeader(429)
			return
		}
		w.WriteHeader(201)
	}))
	defer srv.Close()
	res, err := Run(context.Background(), Config{IngestURL: srv.URL, Duration: 200 * time.Millisecond, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status["429"] == 0 || res.Status["201"] == 0 || res.Events != int64(res.Status["201"]) {
		t.Fatalf("%+v", res)
	}
	by := res.LatencyByStatus
	if by["429"].N != res.Status["429"] || by["201"].N != res.Status["201"] || by["429"].N+by["201"].N != res.Latency.N {
		t.Fatalf("latency by status %+v does not split the %d samples by status %v", by, res.Latency.N, res.Status)
	}
}

func TestRequestBodiesAreValidEvents(t *testing.T) {
	for _, n := range []int{1, 3} {
		g := newGenerator(Config{EventsPerRequest: n, EventSize: 300, Clients: 5, ClientPrefix: "c-"})
		body, ids := g.request()
		var evs []map[string]any
		if n == 1 {
			var e map[string]any
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			evs = append(evs, e)
		} else if err := json.Unmarshal(body, &evs); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		if len(evs) != n || len(ids) != n {
			t.Fatalf("%d events, %d ids", len(evs), len(ids))
		}
		for i, e := range evs {
			ts, _ := e["timestamp"].(string)
			if _, err := time.Parse(time.RFC3339Nano, ts); err != nil || e["id"] != ids[i] || !strings.HasPrefix(e["clientId"].(string), "c-") || e["type"] != "load" {
				t.Fatalf("event %d: %v", i, e)
			}
			if p, ok := e["payload"].(map[string]any); !ok || len(p["data"].(string)) < 100 {
				t.Fatalf("payload %v", e["payload"])
			}
		}
		if len(body) < n*250 || len(body) > n*350 {
			t.Fatalf("%d bytes for %d events of ~300 B", len(body), n)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestUntilEndsTheRunEarly(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(201) }))
	defer srv.Close()
	until := make(chan struct{})
	time.AfterFunc(200*time.Millisecond, func() { close(until) })
	res, err := Run(context.Background(), Config{IngestURL: srv.URL, Duration: time.Minute, Rate: 100, Concurrency: 4, Until: until})
	if err != nil {
		t.Fatal(err)
	}
	if res.Elapsed > 10 || res.Requests == 0 || res.Unsent != 0 {
		t.Fatalf("run did not end at Until: %+v", res)
	}
}

func TestUnsentCountsOnlySendsBlockedBySlowServer(t *testing.T) {
	// One slot, a server that takes 100 ms, 100 sends/s for 500 ms: about 45 sends were due
	// while the slot was busy.
	f := &fakeIngest{ids: map[string]bool{}, status: 201, delay: 100 * time.Millisecond}
	srv := httptest.NewServer(f)
	defer srv.Close()
	res, err := Run(context.Background(), Config{IngestURL: srv.URL, Duration: 500 * time.Millisecond, Rate: 100, Concurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Unsent < 20 || res.Unsent > 50 { // at most 50 sends were due in all
		t.Fatalf("unsent %d, want about 45: %+v", res.Unsent, res)
	}
	// A fast server takes every send: nothing is unsent, not even at the end of the run.
	fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(201) }))
	defer fast.Close()
	for i := 0; i < 3; i++ {
		res, err := Run(context.Background(), Config{IngestURL: fast.URL, Duration: 300 * time.Millisecond, Rate: 200, Concurrency: 50})
		if err != nil || res.Unsent != 0 {
			t.Fatalf("unsent %d against a fast server (%v)", res.Unsent, err)
		}
	}
}
