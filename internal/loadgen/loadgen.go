// Package loadgen drives Spillway's HTTP APIs the way its users' clients do, and measures what
// they see. Open-loop mode sends at a constant arrival rate and measures every request from the
// moment it was SUPPOSED to be sent, so a stall shows up as latency instead of silently lowering
// the offered load (no coordinated omission). Closed-loop mode runs N clients back to back for
// maximum throughput. It can also measure visibility (201 → found by search) and run a search
// workload beside the ingest load.
//
// Requests are sent once each, raw, and deliberately not through pkg/client: what is measured
// is the server's answer to each request — a 429 or 503 and its latency are results, which the
// client's retries would hide and fold into the latency of a later success.
package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config describes one run.
type Config struct {
	IngestURL string // base URL of ingest, e.g. http://127.0.0.1:8080
	SearchURL string // base URL of search (for the search workload and visibility)
	// Path and Query of the ingest request (default /api/v1/events).
	Path   string
	Query  string // e.g. "wait=searchable" or "ack=async"
	APIKey string

	Duration time.Duration
	// Rate is requests per second (open loop). 0 means closed loop with Concurrency clients.
	Rate float64
	// Concurrency is the number of closed-loop clients, or the cap on requests in flight in
	// open loop (beyond it requests queue and their wait counts as latency).
	Concurrency      int
	EventsPerRequest int
	EventSize        int // approximate serialized bytes per event
	Clients          int // distinct clientIds
	ClientPrefix     string
	// VisibilityEvery checks one in N acknowledged events for visibility in search (0 = off).
	VisibilityEvery int
	// VisibilityPoll is how often a probe asks for its event (default 20 ms). Each probe polls
	// until found (about a refresh interval), so probes cost VisibilityPoll⁻¹ requests per
	// second each: on a small machine that load competes with what is measured.
	VisibilityPoll time.Duration
	// SearchRate runs GET /api/v1/events?clientId=<random>&order=desc&limit=100 at this rate
	// beside the ingest load (0 = off).
	SearchRate float64
	// AckedIDs, when set, receives the id of every acknowledged event, one per line.
	AckedIDs io.Writer
	// Timeout of one request.
	Timeout time.Duration
	// Until, when set, ends the run early once it is closed (Duration still bounds it): for runs
	// that last until something else has happened, like a node coming back.
	Until <-chan struct{}
}

func (c *Config) defaults() {
	if c.Path == "" {
		c.Path = "/api/v1/events"
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 50
	}
	if c.EventsPerRequest <= 0 {
		c.EventsPerRequest = 1
	}
	if c.EventSize <= 0 {
		c.EventSize = 1024
	}
	if c.Clients <= 0 {
		c.Clients = 100
	}
	if c.ClientPrefix == "" {
		c.ClientPrefix = "client-"
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	if c.VisibilityPoll <= 0 {
		c.VisibilityPoll = 20 * time.Millisecond
	}
}

// Result is what a run measured.
type Result struct {
	Mode             string         `json:"mode"`
	OfferedRate      float64        `json:"offered_requests_per_second,omitempty"`
	Concurrency      int            `json:"concurrency"`
	EventsPerRequest int            `json:"events_per_request"`
	EventSize        int            `json:"event_size_bytes"`
	Elapsed          float64        `json:"elapsed_seconds"`
	Requests         int64          `json:"requests"`
	Events           int64          `json:"events_acknowledged"`
	EventsPerSecond  float64        `json:"events_per_second"`
	Status           map[string]int `json:"status_counts"`
	Latency          Percentiles    `json:"latency_ms"`
	// LatencyByStatus splits Latency by status ("201", "429", "503", "error"): an overloaded
	// server must refuse fast, and the refusals' latency is its own figure.
	LatencyByStatus map[string]Percentiles `json:"latency_by_status_ms,omitempty"`
	Visibility      *Percentiles           `json:"visibility_ms,omitempty"`
	VisibilityLost  int64                  `json:"visibility_not_found,omitempty"`
	Search          *Percentiles           `json:"search_latency_ms,omitempty"`
	SearchStatus    map[string]int         `json:"search_status_counts,omitempty"`
	// Unsent counts open-loop requests whose intended send time passed while every slot was
	// busy and the run ended first: offered load the system under test did not take.
	Unsent int64 `json:"unsent,omitempty"`
}

// Percentiles summarizes a latency sample in milliseconds.
type Percentiles struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// Summarize computes percentiles of a sample (nearest rank).
func Summarize(d []time.Duration) Percentiles {
	if len(d) == 0 {
		return Percentiles{}
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(q float64) float64 {
		i := int(float64(len(s))*q+0.999999) - 1
		i = max(0, min(i, len(s)-1))
		return ms(s[i])
	}
	var sum time.Duration
	for _, x := range s {
		sum += x
	}
	return Percentiles{N: len(s), P50: at(.50), P90: at(.90), P99: at(.99), P999: at(.999), Max: ms(s[len(s)-1]), Mean: ms(sum / time.Duration(len(s)))}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// recorder collects samples from many goroutines.
type recorder struct {
	mu       sync.Mutex
	lat      []time.Duration
	status   map[string]int
	byStatus map[string][]time.Duration
}

func newRecorder() *recorder {
	return &recorder{status: map[string]int{}, byStatus: map[string][]time.Duration{}}
}

func (r *recorder) add(d time.Duration, status string) {
	r.mu.Lock()
	r.lat = append(r.lat, d)
	r.status[status]++
	r.byStatus[status] = append(r.byStatus[status], d)
	r.mu.Unlock()
}

func (r *recorder) summaryByStatus() map[string]Percentiles {
	out := make(map[string]Percentiles, len(r.byStatus))
	for k, v := range r.byStatus {
		out[k] = Summarize(v)
	}
	return out
}

// clock is the time of a run's schedule and latencies: the wall clock, or a fake one in tests.
type clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type wallClock struct{}

func (wallClock) Now() time.Time                         { return time.Now() }
func (wallClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// testHookLoopDone, when set (by tests), is called once the open-loop scheduler stops sending.
var testHookLoopDone func()

// Run executes the load described by cfg until its duration has passed or ctx ends.
func Run(ctx context.Context, cfg Config) (*Result, error) { return run(ctx, cfg, wallClock{}) }

func run(ctx context.Context, cfg Config, clk clock) (*Result, error) {
	cfg.defaults()
	if cfg.IngestURL == "" {
		return nil, fmt.Errorf("loadgen: IngestURL is required")
	}
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        cfg.Concurrency * 2,
		MaxIdleConnsPerHost: cfg.Concurrency * 2,
		IdleConnTimeout:     90 * time.Second,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: cfg.Timeout}
	gen := newGenerator(cfg)
	rec := newRecorder()
	var events, requests atomic.Int64
	var ackMu sync.Mutex

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	expired := clk.After(cfg.Duration)
	go func() {
		select {
		case <-expired:
			cancel()
		case <-runCtx.Done():
		}
	}()
	if cfg.Until != nil {
		go func() {
			select {
			case <-cfg.Until:
				cancel()
			case <-runCtx.Done():
			}
		}()
	}

	vis := newVisibility(cfg, client)
	var sr *recorder
	var bg sync.WaitGroup
	if cfg.SearchRate > 0 && cfg.SearchURL != "" {
		sr = newRecorder()
		bg.Add(1)
		go func() { defer bg.Done(); runSearch(runCtx, cfg, client, sr) }()
	}

	send := func(intended time.Time) {
		body, ids := gen.request()
		// Requests in flight when the run ends still finish and count (bounded by cfg.Timeout).
		status, err := post(ctx, client, cfg, body)
		lat := clk.Now().Sub(intended)
		requests.Add(1)
		if err != nil {
			rec.add(lat, "error")
			return
		}
		rec.add(lat, strconv.Itoa(status))
		if status == http.StatusCreated || status == http.StatusAccepted {
			events.Add(int64(len(ids)))
			if cfg.AckedIDs != nil {
				ackMu.Lock()
				for _, id := range ids {
					fmt.Fprintln(cfg.AckedIDs, id)
				}
				ackMu.Unlock()
			}
			if status == http.StatusCreated {
				vis.maybeCheck(runCtx, ids)
			}
		}
	}

	start := clk.Now()
	res := &Result{Concurrency: cfg.Concurrency, EventsPerRequest: cfg.EventsPerRequest, EventSize: cfg.EventSize}
	var wg sync.WaitGroup
	if cfg.Rate > 0 {
		res.Mode, res.OfferedRate = "open-loop", cfg.Rate
		sem := make(chan struct{}, cfg.Concurrency)
		interval := time.Duration(float64(time.Second) / cfg.Rate)
		var overdue time.Time
	loop:
		for i := 0; ; i++ {
			intended := start.Add(time.Duration(i) * interval)
			if d := intended.Sub(clk.Now()); d > 0 {
				select {
				case <-runCtx.Done():
					break loop
				case <-clk.After(d):
				}
			}
			select {
			case sem <- struct{}{}: // a free slot: send now (select would pick at random otherwise)
			default:
				select {
				case <-runCtx.Done():
					overdue = intended // every slot was busy: the system under test did not take it
					break loop
				case sem <- struct{}{}: // waiting here counts: latency runs from `intended`
				}
			}
			wg.Add(1)
			go func() { defer wg.Done(); defer func() { <-sem }(); send(intended) }()
		}
		// Sends that were due while every slot was busy, up to the end of the run (Duration, or
		// earlier through Until). A send not yet due at the end is not counted.
		if !overdue.IsZero() {
			end := start.Add(min(clk.Now().Sub(start), cfg.Duration))
			// A send can be due a hair after the end when the deadline's timer fires late.
			res.Unsent = max(0, int64(end.Sub(overdue)/interval)+1)
		}
		if testHookLoopDone != nil {
			testHookLoopDone()
		}
	} else {
		res.Mode = "closed-loop"
		for w := 0; w < cfg.Concurrency; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for runCtx.Err() == nil {
					send(clk.Now())
				}
			}()
		}
	}
	wg.Wait()
	elapsed := clk.Now().Sub(start)
	vis.wait()
	bg.Wait()

	res.Elapsed = elapsed.Seconds()
	res.Requests = requests.Load()
	res.Events = events.Load()
	res.EventsPerSecond = float64(res.Events) / elapsed.Seconds()
	res.Status = rec.status
	res.Latency = Summarize(rec.lat)
	res.LatencyByStatus = rec.summaryByStatus()
	if cfg.VisibilityEvery > 0 {
		p := Summarize(vis.samples())
		res.Visibility = &p
		res.VisibilityLost = vis.lost.Load()
	}
	if sr != nil {
		p := Summarize(sr.lat)
		res.Search, res.SearchStatus = &p, sr.status
	}
	return res, nil
}

func post(ctx context.Context, client *http.Client, cfg Config, body []byte) (int, error) {
	url := strings.TrimRight(cfg.IngestURL, "/") + cfg.Path
	if cfg.Query != "" {
		url += "?" + cfg.Query
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+cfg.APIKey)
	}
	res, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, nil
}

// generator builds request bodies with client-chosen ids, so acknowledgements can be checked
// against the stores without parsing responses.
type generator struct {
	cfg    Config
	seq    atomic.Int64
	run    string
	filler string
}

func newGenerator(cfg Config) *generator {
	g := &generator{cfg: cfg, run: strconv.FormatInt(time.Now().UnixNano(), 36)}
	// An event's envelope (id, clientId, type, timestamp, payload keys) is ~150 bytes.
	n := max(cfg.EventSize-150, 8)
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rand.IntN(len(alphabet))]
	}
	g.filler = string(b)
	return g
}

// request builds one request body by appending bytes: at thousands of requests per second the
// load generator shares the machine's cores with the system under test, and reflection-based
// encoding of every event was its largest cost. Every field is plain ASCII that needs no
// escaping (ids, client ids and the filler are drawn from [a-zA-Z0-9-]).
func (g *generator) request() ([]byte, []string) {
	n := g.cfg.EventsPerRequest
	ids := make([]string, n)
	now := time.Now().UTC().Format(time.RFC3339Nano)
	body := make([]byte, 0, n*(len(g.filler)+160)+2)
	if n > 1 {
		body = append(body, '[')
	}
	for i := 0; i < n; i++ {
		seq := g.seq.Add(1)
		ids[i] = "lg-" + g.run + "-" + strconv.FormatInt(seq, 10)
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, `{"id":"`...)
		body = append(body, ids[i]...)
		body = append(body, `","clientId":"`...)
		body = append(body, g.cfg.ClientPrefix...)
		body = strconv.AppendInt(body, int64(rand.IntN(g.cfg.Clients)), 10)
		body = append(body, `","type":"load","timestamp":"`...)
		body = append(body, now...)
		body = append(body, `","payload":{"seq":`...)
		body = strconv.AppendInt(body, seq, 10)
		body = append(body, `,"data":"`...)
		body = append(body, g.filler...)
		body = append(body, `"}}`...)
	}
	if n > 1 {
		body = append(body, ']')
	}
	return body, ids
}
