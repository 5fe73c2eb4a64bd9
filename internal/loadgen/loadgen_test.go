package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
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
	// One slot in flight, 100 sends/s, and a server that holds the first request while 200 ms
	// pass on the run's clock: the sends due meanwhile queue behind it, and each one's latency
	// must run from when it was due, not from when it got the slot (no coordinated omission).
	srv, hold := holdingServer(t)
	clk := newFakeClock(t)
	until := make(chan struct{})
	got := runAsync(t, clk, Config{IngestURL: srv.URL, Duration: time.Hour, Rate: 100, Concurrency: 1, Until: until})
	<-hold.first
	clk.waitTimers(t, 2) // the run's end, and the next send
	clk.Advance(200 * time.Millisecond)
	close(hold.release)
	// The first request and the 20 sends due at 10..200 ms; then the scheduler waits for 210 ms.
	hold.waitRequests(t, 21)
	clk.waitTimers(t, 2)
	close(until)
	res := <-got
	if res.Mode != "open-loop" || res.Requests != 21 || res.Unsent != 0 {
		t.Fatalf("%+v", res)
	}
	// Latencies 200, 190, …, 0 ms: the k-th send waited from its due time until 200 ms.
	if res.Latency.Max != 200 || res.Latency.P50 != 100 || res.Latency.N != 21 {
		t.Fatalf("latency %+v: the queueing behind the held request is not measured from the due times", res.Latency)
	}
}

// holdingServer answers 201 at once, except the first request, which it holds until release is
// closed; first is closed when the first request arrives.
func holdingServer(t *testing.T) (*httptest.Server, *holder) {
	h := &holder{first: make(chan struct{}), release: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if h.n.Add(1) == 1 {
			close(h.first)
			<-h.release
		}
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(srv.Close)
	return srv, h
}

type holder struct {
	first, release chan struct{}
	n              atomic.Int64
}

func (h *holder) waitRequests(t *testing.T, n int64) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("%d requests", n), func() bool { return h.n.Load() >= n })
}

// runAsync runs the load on clk in the background and delivers its result.
func runAsync(t *testing.T, clk clock, cfg Config) <-chan *Result {
	t.Helper()
	out := make(chan *Result, 1)
	go func() {
		res, err := run(context.Background(), cfg, clk)
		if err != nil {
			t.Error(err)
		}
		out <- res
	}()
	return out
}

// fakeClock is a run's clock that moves only when the test advances it. A timer that fires is
// delivered before Advance returns.
type fakeClock struct {
	mu        sync.Mutex
	now       time.Time
	timers    []fakeTimer
	delivered sync.WaitGroup
	done      chan struct{}
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock(t *testing.T) *fakeClock {
	c := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), done: make(chan struct{})}
	t.Cleanup(func() { close(c.done) })
	return c
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	tm := fakeTimer{at: c.now.Add(d), ch: make(chan time.Time)}
	if d <= 0 {
		c.fire(tm)
	} else {
		c.timers = append(c.timers, tm)
	}
	return tm.ch
}

func (c *fakeClock) fire(tm fakeTimer) {
	c.delivered.Add(1)
	go func() {
		defer c.delivered.Done()
		select {
		case tm.ch <- tm.at:
		case <-c.done:
		}
	}()
}

// Advance moves the clock and waits until every timer that fired has been received.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	keep := c.timers[:0]
	for _, tm := range c.timers {
		if tm.at.After(c.now) {
			keep = append(keep, tm)
		} else {
			c.fire(tm)
		}
	}
	c.timers = keep
	c.mu.Unlock()
	c.delivered.Wait()
}

// waitTimers waits until n timers are pending: whoever set them is waiting for the clock.
func (c *fakeClock) waitTimers(t *testing.T, n int) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("%d pending timers", n), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.timers) == n
	})
}

// waitUntil polls cond; the deadline only guards against a hang.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
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
	srv, hold := holdingServer(t)
	close(hold.release) // answers every request at once
	clk := newFakeClock(t)
	until := make(chan struct{})
	got := runAsync(t, clk, Config{IngestURL: srv.URL, Duration: time.Minute, Rate: 100, Concurrency: 4, Until: until})
	for ms := 10; ms <= 30; ms += 10 {
		clk.waitTimers(t, 2) // the run's end, and the next send
		clk.Advance(10 * time.Millisecond)
	}
	hold.waitRequests(t, 4) // sent at 0, 10, 20 and 30 ms
	clk.waitTimers(t, 2)
	close(until)
	res := <-got
	if res.Elapsed != 0.03 || res.Requests != 4 || res.Unsent != 0 {
		t.Fatalf("run did not end at Until: %+v", res)
	}
}

func TestUnsentCountsOnlySendsBlockedBySlowServer(t *testing.T) {
	// One slot, 100 sends/s for 500 ms, and a server that holds the first request past the end:
	// every later send was due while the slot was busy, the one due at the end included.
	srv, hold := holdingServer(t)
	clk := newFakeClock(t)
	loopDone := make(chan struct{})
	testHookLoopDone = func() { close(loopDone) }
	defer func() { testHookLoopDone = nil }()
	got := runAsync(t, clk, Config{IngestURL: srv.URL, Duration: 500 * time.Millisecond, Rate: 100, Concurrency: 1})
	<-hold.first
	clk.waitTimers(t, 2)
	clk.Advance(10 * time.Millisecond) // the second send is due; the slot is busy
	clk.Advance(490 * time.Millisecond)
	<-loopDone // the run ended while the first request was held
	testHookLoopDone = nil
	close(hold.release)
	res := <-got
	if res.Requests != 1 || res.Unsent != 50 {
		t.Fatalf("unsent %d (sent %d), want the 50 sends due at 10, 20, …, 500 ms: %+v", res.Unsent, res.Requests, res)
	}
	// A server that takes every send: nothing is unsent, not even at the end of the run. (60
	// sends are due in all and 61 may be in flight, so a slot is always free whatever the timing.)
	fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(201) }))
	defer fast.Close()
	res, err := Run(context.Background(), Config{IngestURL: fast.URL, Duration: 300 * time.Millisecond, Rate: 200, Concurrency: 61})
	if err != nil || res.Unsent != 0 {
		t.Fatalf("unsent %d against a fast server (%v)", res.Unsent, err)
	}
}
