package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/spillway/spillway/internal/archivetest"
	"github.com/spillway/spillway/internal/loadgen"
	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/client"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/pgstore"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBuilds()
	os.Exit(code)
}

// pick chooses the short or the full form's value (SPILLWAY_FULL=1).
func pick[T any](short, full T) T {
	if testenv.Short() {
		return short
	}
	return full
}

func formName() string { return pick("short", "full") }

// jitter is a random duration in [lo, hi): kills land at random points of the work.
func jitter(lo, hi time.Duration) time.Duration { return lo + rand.N(hi-lo) }

// ---- the services, as subprocesses ----

// service is a Spillway binary running as a subprocess, with its base URL.
type service struct {
	*testenv.Process
	URL string
}

func addr(t *testing.T) string { return fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)) }

// startIngest runs cmd/ingest on addr against es and waits until it is ready. extra are
// SPILLWAY_ settings. The same addr can be reused to restart it where clients expect it.
func startIngest(t *testing.T, es config.Elasticsearch, addr string, extra ...string) *service {
	t.Helper()
	env := append(testenv.ESEnv(es), "SPILLWAY_HTTP_ADDR="+addr, "SPILLWAY_HTTP_SHUTDOWN_GRACE=20s")
	p := testenv.StartProcess(t, "ingest", testenv.Build(t, "cmd/ingest"), testenv.Env(append(env, extra...)...))
	s := &service{Process: p, URL: "http://" + addr}
	p.WaitHTTP(t, s.URL+"/readyz", 2*time.Minute)
	return s
}

// startSearch runs cmd/search against es and waits until it is ready. extra are SPILLWAY_
// settings.
func startSearch(t *testing.T, es config.Elasticsearch, extra ...string) *service {
	t.Helper()
	a := addr(t)
	env := append(testenv.ESEnv(es), "SPILLWAY_HTTP_ADDR="+a)
	p := testenv.StartProcess(t, "search", testenv.Build(t, "cmd/search"), testenv.Env(append(env, extra...)...))
	s := &service{Process: p, URL: "http://" + a}
	p.WaitHTTP(t, s.URL+"/readyz", 2*time.Minute)
	return s
}

// startArchiver runs `archiver run` against es and pg. It is not waited for: a test kills it at
// random points, including during its start. extra are SPILLWAY_ settings (they override the
// suite's: the last value of a variable wins).
func startArchiver(t *testing.T, es config.Elasticsearch, pg config.Postgres, extra ...string) *service {
	t.Helper()
	a := addr(t)
	env := append(archiverEnv(es, pg), "SPILLWAY_HTTP_ADDR="+a, "SPILLWAY_ARCHIVER_POLL_INTERVAL=50ms",
		"SPILLWAY_ARCHIVER_BACKOFF_MAX=500ms", "SPILLWAY_ARCHIVER_BATCH_SIZE=200")
	p := testenv.StartProcess(t, "archiver", testenv.Build(t, "cmd/archiver"), testenv.Env(append(env, extra...)...), "run")
	return &service{Process: p, URL: "http://" + a}
}

func archiverEnv(es config.Elasticsearch, pg config.Postgres) []string {
	return append(testenv.ESEnv(es), testenv.PGEnv(pg)...)
}

// metric reads a service's /metrics and adds up every series of the metric called name (with
// any labels); ok is false when the metric is not there or /metrics does not answer.
func metric(url, name string) (v float64, ok bool) {
	res, err := (&http.Client{Timeout: 10 * time.Second}).Get(url + "/metrics")
	if err != nil {
		return 0, false
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return 0, false
	}
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		rest, found := strings.CutPrefix(line, name)
		if !found || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(f) == 0 {
			continue
		}
		if x, err := strconv.ParseFloat(f[0], 64); err == nil {
			v, ok = v+x, true
		}
	}
	return v, ok
}

// ---- what clients sent and were told ----

// ackLog collects acknowledged ids, one per line, as loadgen writes them (Config.AckedIDs).
type ackLog struct {
	mu      sync.Mutex
	partial []byte
	ids     []string
}

func (a *ackLog) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.partial = append(a.partial, p...)
	for {
		i := bytes.IndexByte(a.partial, '\n')
		if i < 0 {
			break
		}
		a.ids = append(a.ids, string(a.partial[:i]))
		a.partial = a.partial[i+1:]
	}
	return len(p), nil
}

func (a *ackLog) add(id string) {
	a.mu.Lock()
	a.ids = append(a.ids, id)
	a.mu.Unlock()
}

func (a *ackLog) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.ids)
}

func (a *ackLog) all() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.ids...)
}

// traffic is everything the clients of one fault sent and were told: the load generator's
// runs and the probes.
type traffic struct {
	acks   ackLog
	sent   atomic.Int64
	mu     sync.Mutex
	status map[string]int // ingest answers by HTTP status ("error": no answer)
	search map[string]int // search answers, when a search workload ran
	// The same by phase of the fault; a load chunk counts in the phase it started in.
	phase    string
	phases   []string
	byPhase  map[string]map[string]int
	srPhase  map[string]map[string]int
	hasPhase bool
}

func newTraffic() *traffic {
	return &traffic{status: map[string]int{}, search: map[string]int{}, phase: "before", phases: []string{"before"},
		byPhase: map[string]map[string]int{"before": {}}, srPhase: map[string]map[string]int{"before": {}}}
}

// setPhase names the fault's phase from now on (the load was running "before" until then).
func (tr *traffic) setPhase(name string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.phase, tr.hasPhase = name, true
	tr.phases = append(tr.phases, name)
	tr.byPhase[name], tr.srPhase[name] = map[string]int{}, map[string]int{}
}

func (tr *traffic) currentPhase() string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.phase
}

func (tr *traffic) addRun(phase string, r *loadgen.Result) {
	tr.sent.Add(r.Requests * int64(r.EventsPerRequest))
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for k, v := range r.Status {
		tr.status[k] += v
		tr.byPhase[phase][k] += v
	}
	for k, v := range r.SearchStatus {
		tr.search[k] += v
		tr.srPhase[phase][k] += v
	}
}

func (tr *traffic) statuses() (ingest, search string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return histogram(tr.status), histogram(tr.search)
}

// byPhases describes the answers phase by phase, or "" when the fault named no phases.
func (tr *traffic) byPhases(search bool) string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if !tr.hasPhase {
		return ""
	}
	m := tr.byPhase
	if search {
		m = tr.srPhase
	}
	parts := make([]string, len(tr.phases))
	for i, p := range tr.phases {
		parts[i] = p + ": " + histogram(m[p])
	}
	return strings.Join(parts, "; ")
}

func (tr *traffic) statusCount(status string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.status[status]
}

func histogram(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s×%d", k, m[k])
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// loadConfig is the fault suite's load: open loop (a constant arrival rate, so a stalled or
// dead server does not slow the clients down, and dead-server errors do not spin), several
// events per request, client-chosen ids.
func loadConfig(ingestURL string) loadgen.Config {
	return loadgen.Config{
		IngestURL: ingestURL, Rate: pick(100.0, 200.0), Concurrency: 64, EventsPerRequest: pick(5, 10),
		EventSize: 300, Clients: 20, Timeout: 30 * time.Second,
	}
}

// load runs the load generator in consecutive chunks until stopped, so that it can be stopped
// at a moment the fault chooses while every request in flight still gets its answer (cancelling
// loadgen's context would cut them). A new chunk starts every chunk interval whether or not
// the previous one's last requests have been answered, so the arrival rate stays constant.
type load struct {
	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup
	errs chan error
}

func startLoad(tr *traffic, cfg loadgen.Config) *load {
	const chunk = time.Second
	cfg.Duration = chunk
	cfg.AckedIDs = &tr.acks
	l := &load{stop: make(chan struct{}), errs: make(chan error, 1)}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		tick := time.NewTicker(chunk)
		defer tick.Stop()
		for {
			l.wg.Add(1)
			phase := tr.currentPhase()
			go func() {
				defer l.wg.Done()
				res, err := loadgen.Run(context.Background(), cfg)
				if err != nil {
					select {
					case l.errs <- err:
					default:
					}
					return
				}
				tr.addRun(phase, res)
			}()
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return l
}

// Stop ends the load once the running chunk is over and every request has its answer.
func (l *load) Stop(t *testing.T) {
	t.Helper()
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
	select {
	case err := <-l.errs:
		t.Fatalf("load generator: %v", err)
	default:
	}
}

// waitAcks waits until n more events have been acknowledged than when it was called: the load
// is reaching the stores. The deadline only guards against a hang.
func waitAcks(t *testing.T, tr *traffic, n int) {
	t.Helper()
	target := tr.acks.count() + n
	deadline := time.Now().Add(2 * time.Minute)
	for tr.acks.count() < target {
		if time.Now().After(deadline) {
			i, _ := tr.statuses()
			t.Fatalf("load: fewer than %d events acknowledged in 2 minutes (answers: %s)", n, i)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFor polls cond until it holds; the deadline only guards against a hang.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitLog waits until a process has logged text at least n times in all.
func waitLog(t *testing.T, s *service, text string, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s to log %s", s.Name, text), func() bool {
		if !s.Running() {
			t.Fatalf("%s exited: %v\n%s", s.Name, s.Err(), s.LogTail(4<<10))
		}
		return strings.Count(s.Logs(), text) >= n
	})
}

// warmUp sends one event and waits for its 201 before the load starts: the first event
// creates the daily index, which a busy cluster can take longer than ingest.ack_timeout to do,
// and those 503s would be the start-up's, not the fault's. How long it took is noted.
func warmUp(t *testing.T, f *fault, p *prober) {
	t.Helper()
	start := time.Now()
	p.until(t, "warm-up", http.StatusCreated, 3*time.Minute)
	f.steps = append(f.steps, fmt.Sprintf("first event (creates the daily index) %.1f s, %d tries", time.Since(start).Seconds(), len(p.phase("warm-up"))))
	f.last = time.Now()
}

// ---- clients that retry: the official Go client ----

const (
	// retrierClient is the clientId of the retrying clients' events.
	retrierClient = "retrier"
	// retrierBatch is the events per batch (IndexerConfig.FlushEvents).
	retrierBatch = 10
	// retrierPace is how often each retrying client adds a batch's worth of events, one at a
	// time.
	retrierPace = 200 * time.Millisecond
	// retrierBuffer bounds each retrying client's Indexer (MaxBufferedBytes): some seconds of
	// its events, so that an outage fills it and Add waits, as it must.
	retrierBuffer = 32 << 10
)

// retriersText describes the retrying clients in a fault's description.
func retriersText(clients int) string {
	return fmt.Sprintf("%d clients of the official Go client (each a `pkg/client` Indexer cutting %d-event batches) "+
		"that resend each batch, with the same ids and timestamps, until it is stored", clients, retrierBatch)
}

// retriers are clients built on the official Go client (pkg/client), doing what the API asks
// of its clients. Each adds events at a steady pace to its own Indexer, which gives every
// event its id (a UUIDv7) and timestamp before the first attempt, cuts batches, and resends a
// batch unchanged after a 429 or 503 (no sooner than its Retry-After) or a cut connection,
// until it is stored. An event stored by an attempt whose answer was lost comes back as a
// duplicate, and must still be stored once.
//
// What they were told comes from the client alone: each event's callbacks (acknowledged ids
// join the traffic's, so the check covers them; a failure fails the test), the Indexers'
// stats (requests, retries, duplicates) and the OnAttempt hook (events sent, answers, the
// wait before each retry).
type retriers struct {
	tr     *traffic
	ixs    []client.Indexer
	cancel context.CancelFunc // ends the adding, and an Add waiting for room
	wg     sync.WaitGroup
	errs   chan error // an Add that failed for another reason than Stop

	mu         sync.Mutex
	stats      client.IndexerStats // of every Indexer, once stopped
	failed     []string            // "id: error" of the events not stored
	answers    map[string]int      // attempts by status ("error": no answer)
	retryAfter int                 // retries after an answer with Retry-After
	tooSoon    []string            // those sent sooner than it asked
	addWait    time.Duration       // the longest an Add waited for room in the buffer
}

// startRetriers starts clients that post to ingestURL, answered as ack says. Stop must be
// called before the check.
func (f *fault) startRetriers(ingestURL string, clients int, ack client.Ack) *retriers {
	t := f.t
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &retriers{tr: f.tr, cancel: cancel, answers: map[string]int{}, errs: make(chan error, clients)}
	for n := range clients {
		c, err := client.New(client.Options{IngestURL: ingestURL, Ack: ack, OnAttempt: r.attempt,
			// A batch not stored within 3 minutes fails, and the test with it: a hang guard.
			Retry: client.RetryPolicy{MaxElapsed: 3 * time.Minute}})
		if err != nil {
			t.Fatal(err)
		}
		ix, err := c.NewIndexer(client.IndexerConfig{FlushEvents: retrierBatch, FlushBytes: retrierBuffer / 2, MaxBufferedBytes: retrierBuffer})
		if err != nil {
			t.Fatal(err)
		}
		r.ixs = append(r.ixs, ix)
		r.wg.Add(1)
		go func() { defer r.wg.Done(); r.add(ctx, ix, n) }()
	}
	t.Cleanup(func() { // after a failure before Stop: release the Indexers at once
		cancel()
		r.wg.Wait()
		ctx, end := context.WithCancel(context.Background())
		end()
		for _, ix := range r.ixs {
			_ = ix.Close(ctx)
		}
	})
	return r
}

// add adds events to ix, one every retrierPace/retrierBatch, until ctx ends.
func (r *retriers) add(ctx context.Context, ix client.Indexer, n int) {
	cb := client.Callbacks{
		OnSuccess: func(e client.Event) { r.tr.acks.add(e.ID) },
		OnFailure: func(e client.Event, err error) {
			r.mu.Lock()
			r.failed = append(r.failed, fmt.Sprintf("%s: %v", e.ID, err))
			r.mu.Unlock()
		},
	}
	tick := time.NewTicker(retrierPace / retrierBatch)
	defer tick.Stop()
	for i := 0; ; i++ {
		start := time.Now()
		e := client.Event{ClientID: retrierClient, Type: "retry", Payload: json.RawMessage(fmt.Sprintf(`{"client":%d,"i":%d}`, n, i))}
		if err := ix.Add(ctx, e, cb); err != nil {
			if ctx.Err() == nil {
				r.errs <- fmt.Errorf("retrying client %d: %w", n, err)
			}
			return
		}
		waited := time.Since(start)
		r.mu.Lock()
		r.addWait = max(r.addWait, waited)
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// attempt is the clients' OnAttempt hook.
func (r *retriers) attempt(a client.Attempt) {
	r.tr.sent.Add(int64(a.Events))
	status := "error"
	if a.Status != 0 {
		status = strconv.Itoa(a.Status)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.answers[status]++
	var e *client.Error
	if errors.As(a.Err, &e) && e.RetryAfter > 0 && a.Wait > 0 {
		r.retryAfter++
		if a.Wait < e.RetryAfter {
			r.tooSoon = append(r.tooSoon, fmt.Sprintf("%s after %d %s with Retry-After %s", a.Wait, e.Status, e.Code, e.RetryAfter))
		}
	}
}

// answered counts the clients' attempts answered with status ("error": none).
func (r *retriers) answered(status string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.answers[status]
}

// Stop ends the adding, lets every Indexer send what it holds and waits for every event's
// outcome. It fails the test when an event was not stored or a retry came sooner than the
// server's Retry-After, and describes what the clients did.
func (r *retriers) Stop(t *testing.T) string {
	t.Helper()
	r.cancel()
	r.wg.Wait()
	select {
	case err := <-r.errs:
		t.Errorf("add: %v", err)
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // a hang guard
	defer cancel()
	var s client.IndexerStats
	for _, ix := range r.ixs {
		if err := ix.Close(ctx); err != nil {
			t.Errorf("a retrying client's Indexer did not send everything it held: %v", err)
		}
		x := ix.Stats()
		s.Added, s.Stored, s.Failed = s.Added+x.Added, s.Stored+x.Stored, s.Failed+x.Failed
		s.Duplicates, s.DuplicatesOnRetry = s.Duplicates+x.Duplicates, s.DuplicatesOnRetry+x.DuplicatesOnRetry
		s.Requests, s.Retries = s.Requests+x.Requests, s.Retries+x.Retries
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats = s
	if s.Added == 0 {
		t.Error("the retrying clients added no event")
	}
	if len(r.failed) > 0 {
		t.Errorf("%d events of the retrying clients were not stored, e.g. %v", len(r.failed), head(r.failed))
	}
	if len(r.tooSoon) > 0 {
		t.Errorf("%d retries were sent sooner than the server's Retry-After asked, e.g. %v", len(r.tooSoon), head(r.tooSoon))
	}
	out := fmt.Sprintf("retrying clients (%d `pkg/client` Indexers, %d-event batches, %d KiB buffer each): %d events added, %d stored "+
		"(acknowledged to their callbacks), %d failed; %d requests, %d of them resending a batch after a failed attempt; "+
		"%d events found already stored by a resent attempt (written by an attempt whose answer was lost), each stored once; "+
		"their attempts were answered %s; %d retries followed an answer with Retry-After (%d sooner than it asked)",
		len(r.ixs), retrierBatch, retrierBuffer>>10, s.Added, s.Stored, s.Failed, s.Requests, s.Retries, s.DuplicatesOnRetry,
		histogram(r.answers), r.retryAfter, len(r.tooSoon))
	if n := s.Duplicates - s.DuplicatesOnRetry; n > 0 {
		out += fmt.Sprintf("; %d events found already stored by a first attempt (ingest's own resend of a bulk request whose answer it lost)", n)
	}
	return out + fmt.Sprintf("; the longest Add waited %.1f s for room in the buffer", r.addWait.Seconds())
}

// ---- probes: single requests whose answers are looked at one by one ----

type probe struct {
	Phase      string
	Status     int // 0: no answer
	Code       string
	Message    string
	RetryAfter string // the Retry-After header
	Latency    time.Duration
	Answered   time.Time // when the answer (or the error) came
	Err        string
}

// prober posts one-event requests with client-chosen ids and keeps every answer; acknowledged
// ids join the traffic's, so the final check covers them too.
type prober struct {
	url    string
	tr     *traffic
	client *http.Client
	n      atomic.Int64
	wg     sync.WaitGroup
	mu     sync.Mutex
	got    []probe
}

func newProber(ingestURL string, tr *traffic) *prober {
	return &prober{url: ingestURL, tr: tr, client: &http.Client{Timeout: time.Minute}}
}

func (p *prober) post(phase string) probe {
	id := fmt.Sprintf("probe-%s-%d", strings.ReplaceAll(phase, " ", "_"), p.n.Add(1))
	body := fmt.Sprintf(`{"id":%q,"clientId":"probe","type":"probe","payload":{"phase":%q}}`, id, phase)
	p.tr.sent.Add(1)
	start := time.Now()
	res, err := p.client.Post(p.url+"/api/v1/events", "application/json", strings.NewReader(body))
	pr := probe{Phase: phase}
	if err != nil {
		pr.Err, pr.Latency, pr.Answered = err.Error(), time.Since(start), time.Now()
	} else {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		pr.Latency, pr.Answered, pr.Status, pr.RetryAfter = time.Since(start), time.Now(), res.StatusCode, res.Header.Get("Retry-After")
		var env struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(b, &env) == nil {
			pr.Code, pr.Message = env.Error.Code, env.Error.Message
		}
		if res.StatusCode == http.StatusCreated || res.StatusCode == http.StatusAccepted {
			p.tr.acks.add(id)
		}
	}
	p.mu.Lock()
	p.got = append(p.got, pr)
	p.mu.Unlock()
	return pr
}

// every posts a probe every interval, each in its own goroutine (so a slow answer does not
// delay the next), until ctx ends; wait waits for the last answers.
func (p *prober) every(ctx context.Context, phase string, interval time.Duration) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			p.wg.Add(1)
			go func() { defer p.wg.Done(); p.post(phase) }()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
}

func (p *prober) wait() { p.wg.Wait() }

// until posts probes one after another until one is answered with status; the deadline only
// guards against a hang (a service that never recovers fails the test here).
func (p *prober) until(t *testing.T, phase string, status int, timeout time.Duration) probe {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		pr := p.post(phase)
		if pr.Status == status {
			return pr
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %d from ingest within %s (%s); last answer %d %s %s %s", status, timeout, phase, pr.Status, pr.Code, pr.Message, pr.Err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (p *prober) phase(name string) []probe {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []probe
	for _, pr := range p.got {
		if pr.Phase == name {
			out = append(out, pr)
		}
	}
	return out
}

// describe summarizes a phase's probes: statuses, error codes, one message per code, latency.
func describe(probes []probe) string {
	status := map[string]int{}
	messages := map[string]string{}
	lat := make([]time.Duration, 0, len(probes))
	for _, pr := range probes {
		k := strconv.Itoa(pr.Status)
		if pr.Status == 0 {
			k = "error"
		}
		if pr.Code != "" {
			k += " " + pr.Code
			messages[pr.Code] = pr.Message
		}
		status[k]++
		lat = append(lat, pr.Latency)
	}
	s := loadgen.Summarize(lat)
	out := fmt.Sprintf("%d probes: %s; answered in p50 %.0f ms, max %.0f ms", len(probes), histogram(status), s.P50, s.Max)
	codes := make([]string, 0, len(messages))
	for c := range messages {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	for _, c := range codes {
		out += fmt.Sprintf("; %s: \"%s\"", c, messages[c])
	}
	return out
}

// reasons503 lists the reasons ingest logged for its 503s ("answering 503" lines are
// rate-limited, so this names the kinds, not every answer), with the first error of each.
func reasons503(logs ...string) string {
	seen := map[string]string{}
	var order []string
	for _, l := range logs {
		for _, line := range strings.Split(l, "\n") {
			if !strings.Contains(line, `"msg":"answering 503"`) {
				continue
			}
			var rec struct {
				Reason string `json:"reason"`
				Err    string `json:"err"`
			}
			if json.Unmarshal([]byte(line), &rec) != nil {
				continue
			}
			if _, ok := seen[rec.Reason]; !ok {
				seen[rec.Reason] = rec.Err
				order = append(order, rec.Reason)
			}
		}
	}
	parts := make([]string, len(order))
	for i, r := range order {
		e := seen[r]
		if len(e) > 300 {
			e = e[:300] + "…"
		}
		parts[i] = fmt.Sprintf("%s (%s)", r, e)
	}
	return strings.Join(parts, "; ")
}

// note503 records the kinds of 503 the ingest processes logged, if any.
func (f *fault) note503(procs ...*service) {
	f.t.Helper()
	logs := make([]string, len(procs))
	for i, p := range procs {
		logs[i] = p.Logs()
	}
	if r := reasons503(logs...); r != "" {
		f.note("kinds of 503 in ingest's log (reason, first error): %s", r)
	}
}

// ---- RSS of a process, sampled ----

// rssSampler samples a process's VmRSS every 100 ms and keeps the maximum per phase.
type rssSampler struct {
	pid    int
	mu     sync.Mutex
	cur    string
	order  []string
	maxRSS map[string]int64
	n      map[string]int
	stop   chan struct{}
	done   chan struct{}
}

func sampleRSS(pid int, phase string) *rssSampler {
	s := &rssSampler{pid: pid, cur: phase, order: []string{phase}, maxRSS: map[string]int64{}, n: map[string]int{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if v, err := testenv.RSS(s.pid); err == nil {
				s.mu.Lock()
				s.maxRSS[s.cur] = max(s.maxRSS[s.cur], v)
				s.n[s.cur]++
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) phase(name string) {
	s.mu.Lock()
	s.cur = name
	s.order = append(s.order, name)
	s.mu.Unlock()
}

// max is the largest RSS sampled in a phase (after finish, or while sampling).
func (s *rssSampler) max(phase string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxRSS[phase]
}

// finish stops sampling and returns the maximum over all phases and a summary.
func (s *rssSampler) finish() (maxRSS int64, summary string) {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	var parts []string
	for _, p := range s.order {
		maxRSS = max(maxRSS, s.maxRSS[p])
		parts = append(parts, fmt.Sprintf("%s %.1f MiB (%d samples)", p, float64(s.maxRSS[p])/(1<<20), s.n[p]))
	}
	return maxRSS, "max RSS of ingest (VmRSS, sampled every 100 ms): " + strings.Join(parts, ", ")
}

// ---- the check: what clients were told against what is stored ----

// fault is one fault's record: it collects notes, runs the final check and, when the test
// ends, appends its Result to the report file (SPILLWAY_FAULTS_REPORT).
type fault struct {
	t     *testing.T
	tr    *traffic
	res   Result
	start time.Time
	steps []string
	last  time.Time
}

// step marks the end of a phase; the timeline of phases joins the notes (measured, never
// asserted).
func (f *fault) step(name string) {
	now := time.Now()
	f.steps = append(f.steps, fmt.Sprintf("%s %.1f s", name, now.Sub(f.last).Seconds()))
	f.last = now
}

func newFault(t *testing.T, name, injected string) *fault {
	f := &fault{t: t, tr: newTraffic(), start: time.Now(), last: time.Now(),
		res: Result{Fault: name, Test: t.Name(), Form: formName(), Injected: injected}}
	t.Cleanup(func() {
		if len(f.steps) > 0 {
			f.note("timeline: %s", strings.Join(f.steps, "; "))
		}
		f.res.Passed = !t.Failed()
		f.res.Seconds = time.Since(f.start).Seconds()
		if err := Record(f.res); err != nil {
			t.Errorf("record result: %v", err)
		}
	})
	return f
}

func (f *fault) note(format string, args ...any) {
	f.t.Helper()
	n := fmt.Sprintf(format, args...)
	f.res.Notes = append(f.res.Notes, n)
	f.t.Log(n)
}

// check compares every acknowledged id with Elasticsearch and, when pg is not nil, with
// PostgreSQL (the caller has waited for the archiver to catch up). It prints the counts line
// and fails the test if anything acknowledged is missing or anything is stored twice.
func (f *fault) check(es *esstore.Store, pg *pgstore.Store) {
	t := f.t
	t.Helper()
	f.step("until the check")
	defer f.step("check")
	acked := f.tr.acks.all()
	docs := retry(t, "read Elasticsearch ids", func(ctx context.Context) ([]docID, error) { return esIDs(ctx, es) })
	esIDs := make([]string, len(docs))
	for i, d := range docs {
		esIDs[i] = d.ID
	}
	var pgIDs, dupPG []string
	if pg != nil {
		pgIDs = retry(t, "read PostgreSQL ids", func(ctx context.Context) ([]string, error) { return pgIDsOf(ctx, archivetest.DB(t, pg)) })
		dupPG = retry(t, "count PostgreSQL duplicates", func(ctx context.Context) ([]string, error) { return pgDuplicates(ctx, archivetest.DB(t, pg), "events") })
	}
	inES, dupES := set(esIDs)
	inPG, _ := set(pgIDs)
	var lostES, lostPG, lost []string
	ackedSet := make(map[string]bool, len(acked))
	for _, id := range acked {
		ackedSet[id] = true
		missing := false
		if !inES[id] {
			lostES = append(lostES, id)
			missing = true
		}
		if pg != nil && !inPG[id] {
			lostPG = append(lostPG, id)
			missing = true
		}
		if missing {
			lost = append(lost, id)
		}
	}
	unacked := 0
	for id := range inES {
		if !ackedSet[id] {
			unacked++
		}
	}
	// Every event of the retrying clients gets its outcome before the check, and any failure
	// has failed the test: one stored without a success is an event their retries stored again
	// under another id or time — stored twice, which the id count above cannot see.
	var strays []string
	for _, d := range docs {
		if d.ClientID == retrierClient && !ackedSet[d.ID] {
			strays = append(strays, d.ID)
		}
	}
	f.res.Sent = f.tr.sent.Load()
	f.res.Acknowledged = int64(len(acked))
	f.res.StoredES = int64(len(esIDs))
	if pg != nil {
		n := int64(len(pgIDs))
		f.res.StoredPG = &n
	}
	f.res.Lost = int64(len(lost))
	f.res.Duplicated = int64(len(dupES) + len(dupPG))
	ingest, search := f.tr.statuses()
	if ingest != "none" {
		f.note("load answers: %s", ingest)
	}
	if p := f.tr.byPhases(false); p != "" {
		f.note("load answers by phase (a 1 s load chunk counts in the phase it started in): %s", p)
	}
	if search != "none" {
		f.note("search answers: %s", search)
		if p := f.tr.byPhases(true); p != "" {
			f.note("search answers by phase: %s", p)
		}
	}
	if unacked > 0 {
		f.note("%d stored events were not acknowledged (their requests, sent once by the load generator or a probe, were cut or "+
			"refused by the fault after the write; a client resends them with the same ids)", unacked)
	}
	pgCount := "-"
	if f.res.StoredPG != nil {
		pgCount = strconv.FormatInt(*f.res.StoredPG, 10)
	}
	t.Logf("counts: sent=%d acknowledged=%d stored_es=%d stored_pg=%s lost=%d duplicated=%d",
		f.res.Sent, f.res.Acknowledged, f.res.StoredES, pgCount, f.res.Lost, f.res.Duplicated)
	if len(acked) == 0 {
		t.Error("nothing was acknowledged: the check checked nothing")
	}
	if len(lostES) > 0 {
		t.Errorf("%d acknowledged events are not in Elasticsearch, e.g. %v", len(lostES), head(lostES))
	}
	if len(lostPG) > 0 {
		t.Errorf("%d acknowledged events are not in PostgreSQL, e.g. %v", len(lostPG), head(lostPG))
	}
	if len(dupES)+len(dupPG) > 0 {
		t.Errorf("stored more than once: %d in Elasticsearch %v, %d in PostgreSQL %v", len(dupES), head(dupES), len(dupPG), head(dupPG))
	}
	if len(strays) > 0 {
		t.Errorf("%d events of the retrying clients are in Elasticsearch although no callback said they were stored, e.g. %v", len(strays), head(strays))
	}
}

// checkArchive is check with PostgreSQL (the archiver has caught up), then the archive's own
// accounting: checkpoints that add up (archivetest.CheckExactlyOnce), no mismatch reported by an
// archiver's periodic verification (in logs), and no row written outside the feed — a repair
// or a backfill would mean the feed had left a gap.
func (f *fault) checkArchive(es *esstore.Store, pg *pgstore.Store, logs string) {
	t := f.t
	t.Helper()
	f.check(es, pg)
	if !t.Failed() {
		archivetest.CheckExactlyOnce(t, es, pg)
	}
	if strings.Contains(logs, "verify found a mismatch") {
		t.Error("an archiver's periodic verification reported a mismatch")
	}
	st := retry(t, "archive state", func(ctx context.Context) (pgstore.State, error) { return pg.State(ctx) })
	f.note("archive state: %d rows repaired by verification, %d backfilled", st.RowsRepaired, st.RowsBackfilled)
	if st.RowsRepaired+st.RowsBackfilled != 0 {
		t.Error("rows were written outside the feed: a verification found (and repaired) a gap the feed left")
	}
}

func head(s []string) []string { return s[:min(len(s), 5)] }

// set returns the ids as a set, and those that occur more than once.
func set(ids []string) (map[string]bool, []string) {
	m := make(map[string]bool, len(ids))
	var dup []string
	for _, id := range ids {
		if m[id] {
			dup = append(dup, id)
		}
		m[id] = true
	}
	return m, dup
}

// retry runs f until it succeeds; stores can be briefly unavailable right after a fault (a
// cluster electing a master, a pool reconnecting). The deadline only guards against a hang.
func retry[T any](t *testing.T, what string, f func(context.Context) (T, error)) T {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		v, err := f(ctx)
		cancel()
		if err == nil {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

var everything = event.Range{From: time.Unix(0, 0), To: time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)}

// docID is a stored event's id and clientId.
type docID struct{ ID, ClientID string }

// esIDs lists every document of the store's event indices, one per document (an id in two
// indices is listed twice), from a point in time after a refresh; it fails rather than return
// a partial answer.
func esIDs(ctx context.Context, es *esstore.Store) ([]docID, error) {
	if err := es.Refresh(ctx); err != nil {
		return nil, err
	}
	var ids []docID
	err := es.ScanRange(ctx, everything, 10000, func(evs []event.Event) error {
		for _, d := range evs {
			ids = append(ids, docID{d.ID, d.ClientID})
		}
		return nil
	})
	return ids, err
}

// pgIDsOf lists every row's id of the events table.
func pgIDsOf(ctx context.Context, db *pgxpool.Pool) ([]string, error) {
	rows, err := db.Query(ctx, "SELECT id FROM events")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// pgDuplicates lists the events stored more than once in table, as "id@day×rows": rows with
// the same id and the same UTC day of their timestamp — an event's identity in Elasticsearch,
// whose daily index the day chooses. It counts rows instead of relying on the table's key, so
// that it finds a double write whatever the key is: PRIMARY KEY (id) forbids one, a key that
// includes ts does not forbid the same event written with two timestamps of one day, and a
// table without the key forbids nothing.
func pgDuplicates(ctx context.Context, db *pgxpool.Pool, table string) ([]string, error) {
	rows, err := db.Query(ctx, `SELECT id, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, count(*)
		FROM "`+strings.ReplaceAll(table, `"`, `""`)+`" GROUP BY id, day HAVING count(*) > 1 ORDER BY id, day`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id, day string
		var n int64
		if err := rows.Scan(&id, &day, &n); err != nil {
			return nil, err
		}
		out = append(out, fmt.Sprintf("%s@%s×%d", id, day, n))
	}
	return out, rows.Err()
}

// ---- Elasticsearch administration of private clusters ----

// esDo sends one request to a node and returns the status and body.
func esDo(method, url, body string) (int, []byte, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, b, err
}

// esMust is esDo that fails the test unless the answer is 200.
func esMust(t *testing.T, method, url, body string) []byte {
	t.Helper()
	status, b, err := esDo(method, url, body)
	if err != nil || status != http.StatusOK {
		t.Fatalf("%s %s: %d %v %s", method, url, status, err, b)
	}
	return b
}
