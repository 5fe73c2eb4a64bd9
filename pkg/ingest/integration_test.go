package ingest_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillway/spillway/api/apitest"
	"github.com/spillway/spillway/internal/metrictest"
	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/httpx"
	"github.com/spillway/spillway/pkg/ingest"
)

// stack is the ingest service in process against a real Elasticsearch: the same pieces
// cmd/ingest wires, behind a real HTTP server.
type stack struct {
	es     config.Elasticsearch
	store  *esstore.Store
	writer *esstore.BulkWriter
	h      *ingest.Handler
	reg    *prometheus.Registry
	srv    *httptest.Server
	cfg    config.Ingest
}

func newStack(t testing.TB, es config.Elasticsearch, tune func(*config.Ingest)) *stack {
	t.Helper()
	cfg := testenv.LoadConfig(t, config.RoleIngest).Ingest
	if tune != nil {
		tune(&cfg)
	}
	store, err := esstore.New(es, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testenv.Context(t, time.Minute)
	if err := store.InstallTemplate(ctx); err != nil {
		t.Fatalf("install template: %v", err)
	}
	reg := prometheus.NewRegistry()
	mon := ingest.NewMonitor(reg, cfg.RetryAfter, nil)
	w, err := store.NewBulkWriter(esstore.BulkConfig{MaxConcurrent: cfg.BulkWorkers, FlushBytes: int(cfg.BulkFlushBytes),
		Linger: cfg.BulkFlushInterval, Timeout: cfg.AckTimeout, OnFlush: mon.ObserveFlush})
	if err != nil {
		t.Fatal(err)
	}
	h := ingest.New(cfg, ingest.Options{Writer: w, Monitor: mon})
	r := httpx.NewRouter()
	httpx.Use(r, httpx.WithRequestID)
	h.Mount(r)
	srv := httptest.NewServer(apitest.Handler(t, apitest.Ingest, r))
	t.Cleanup(func() {
		srv.Close()
		_ = w.Close(context.Background())
	})
	return &stack{es: es, store: store, writer: w, h: h, reg: reg, srv: srv, cfg: cfg}
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (s *stack) post(t testing.TB, query, contentType string, body []byte, gz bool) answer {
	t.Helper()
	if gz {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(body)
		_ = zw.Close()
		body = buf.Bytes()
	}
	req, _ := http.NewRequest(http.MethodPost, s.srv.URL+"/api/v1/events"+query, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	if gz {
		req.Header.Set("Content-Encoding", "gzip")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("post: %v", err)
		return answer{}
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return answer{res.StatusCode, res.Header, b}
}

func (a answer) created(t testing.TB) ingest.Response {
	t.Helper()
	var r ingest.Response
	if a.status != http.StatusCreated || json.Unmarshal(a.body, &r) != nil {
		t.Fatalf("want 201, got %d: %s", a.status, a.body)
	}
	return r
}

// stored returns the events with the ids, after a refresh; missing ids are absent from the map.
func (s *stack) stored(t *testing.T, ids ...string) map[string]event.Event {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	if err := s.store.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	out := map[string]event.Event{}
	for _, id := range ids {
		e, err := s.store.Get(ctx, id, time.Time{})
		if errors.Is(err, event.ErrNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out[id] = e
	}
	return out
}

// count returns how many documents the test's indices hold (refreshed first by the caller).
func (s *stack) count() (int, error) {
	res, err := http.Get(s.es.URLs[0] + "/" + s.store.Pattern() + "/_count?allow_no_indices=true&ignore_unavailable=true")
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	var out struct {
		Count int `json:"count"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || res.StatusCode != 200 {
		return 0, fmt.Errorf("count: status %d: %v", res.StatusCode, err)
	}
	return out.Count, nil
}

// metric sums the series of a counter or gauge that have the labels (name/value pairs).
func (s *stack) metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	return metrictest.Sum(t, s.reg, name, labels...)
}

func TestIngestStoresEveryBodyFormat(t *testing.T) {
	s := newStack(t, testenv.ES(t), nil)
	ts := time.Now().UTC().Add(-time.Hour).Truncate(time.Second).Add(123456789 * time.Nanosecond)
	payload := `{ "n" : 123456789012345678901234567890, "s" : "\u00e9<&>", "a" : [ 1.50, {} ] }`
	wantPayload := `{"n":123456789012345678901234567890,"s":"\u00e9<&>","a":[1.50,{}]}`
	one := func(id, client string) string {
		return fmt.Sprintf(`{"id":%q,"clientId":%q,"type":"t","timestamp":%q,"payload":%s}`, id, client, ts.Format(time.RFC3339Nano), payload)
	}
	prefix := testenv.Name("f")
	bodies := []struct {
		name, ct string
		body     string
		gz       bool
		ids      []string
	}{
		{"single", "application/json", one(prefix+"-s", "c-single"), false, []string{prefix + "-s"}},
		{"array", "application/json", "[" + one(prefix+"-a1", "c1") + "," + one(prefix+"-a2", "c2") + "]", false, []string{prefix + "-a1", prefix + "-a2"}},
		{"ndjson", "application/x-ndjson", one(prefix+"-n1", "c1") + "\n" + one(prefix+"-n2", "c2") + "\n", false, []string{prefix + "-n1", prefix + "-n2"}},
		{"gzip ndjson", "application/x-ndjson", one(prefix+"-g1", "c1") + "\n" + one(prefix+"-g2", "c2"), true, []string{prefix + "-g1", prefix + "-g2"}},
	}
	for _, b := range bodies {
		t.Run(b.name, func(t *testing.T) {
			r := s.post(t, "", b.ct, []byte(b.body), b.gz).created(t)
			if strings.Join(r.IDs, ",") != strings.Join(b.ids, ",") || r.Accepted != len(b.ids) || r.Duplicates != 0 {
				t.Fatalf("response %+v", r)
			}
			got := s.stored(t, b.ids...)
			for _, id := range b.ids {
				e, ok := got[id]
				if !ok {
					t.Fatalf("event %s not stored", id)
				}
				if string(e.Payload) != wantPayload || !e.Timestamp.Equal(event.Truncate(ts)) || e.Type != "t" || e.IngestedAt.IsZero() {
					t.Errorf("stored %+v", e)
				}
			}
		})
	}

	t.Run("server-assigned ids are retrievable", func(t *testing.T) {
		r := s.post(t, "", "application/json", []byte(`[{"clientId":"x"},{"clientId":"y"}]`), false).created(t)
		got := s.stored(t, r.IDs...)
		if len(got) != 2 || got[r.IDs[0]].ClientID != "x" || got[r.IDs[1]].ClientID != "y" {
			t.Fatalf("ids %v: stored %+v", r.IDs, got)
		}
	})
}

func TestIngestDuplicatesAreStoredOnce(t *testing.T) {
	s := newStack(t, testenv.ES(t), nil)
	ts := time.Now().UTC().Format(time.RFC3339Nano)
	body := []byte(fmt.Sprintf(`[{"id":"dup-1","clientId":"c","timestamp":%q},{"id":"dup-2","clientId":"c","timestamp":%q}]`, ts, ts))
	if r := s.post(t, "", "application/json", body, false).created(t); r.Duplicates != 0 || r.Accepted != 2 {
		t.Fatalf("first: %+v", r)
	}
	// The retry, plus one new event.
	retry := []byte(fmt.Sprintf(`[{"id":"dup-1","clientId":"c","timestamp":%q},{"id":"dup-2","clientId":"c","timestamp":%q},{"id":"dup-3","clientId":"c","timestamp":%q}]`, ts, ts, ts))
	if r := s.post(t, "", "application/json", retry, false).created(t); r.Duplicates != 2 || r.Accepted != 3 {
		t.Fatalf("retry: %+v", r)
	}
	ctx := testenv.Context(t, time.Minute)
	if err := s.store.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	n, err := s.count()
	if err != nil || n != 3 {
		t.Fatalf("%d documents stored (%v), want 3", n, err)
	}
	if s.metric(t, "spillway_ingest_events_total", "outcome", "duplicated") != 2 {
		t.Error("duplicates not counted")
	}
}

func TestIngestWaitSearchable(t *testing.T) {
	es := testenv.ES(t)
	// Long enough that an event is not visible by chance right after a plain write; short enough
	// for wait_for to return well within the acknowledgement timeout.
	es.RefreshInterval = 3 * time.Second
	s := newStack(t, es, nil)
	r := s.post(t, "?wait=searchable", "application/json", []byte(`{"clientId":"visible"}`), false).created(t)
	e, err := s.store.Get(testenv.Context(t, time.Minute), r.IDs[0], time.Time{}) // a search, not a realtime get
	if err != nil || e.ClientID != "visible" {
		t.Fatalf("not visible to search right after wait=searchable: %+v %v", e, err)
	}
}

func TestIngestRefusedRequestsStoreNothing(t *testing.T) {
	s := newStack(t, testenv.ES(t), func(c *config.Ingest) {
		c.MaxEvents = 3
		c.MaxBodyBytes = 4 << 10
		c.MaxPayloadBytes = 1 << 10
	})
	ev := func(id string) string { return fmt.Sprintf(`{"id":%q,"clientId":"c"}`, id) }
	tests := []struct {
		name, ct string
		body     string
		gz       bool
		status   int
		ids      []string
	}{
		{"400 one invalid event", "application/json", "[" + ev("r400a") + "," + ev("r400b") + `,{"id":"r400c","clientId":"c","payload":{"a":1,"a":2}}]`, false, 400, []string{"r400a", "r400b", "r400c"}},
		{"400 invalid NDJSON line", "application/x-ndjson", ev("r400d") + "\n{\"id\":\"r400e\",\n", false, 400, []string{"r400d", "r400e"}},
		{"413 too many events", "application/x-ndjson", ev("r413a") + "\n" + ev("r413b") + "\n" + ev("r413c") + "\n" + ev("r413d") + "\n", false, 413, []string{"r413a", "r413b", "r413c", "r413d"}},
		{"413 body too large after gunzip", "application/json", `{"id":"r413e","clientId":"c","payload":{"x":"` + strings.Repeat("a", 8<<10) + `"}}`, true, 413, []string{"r413e"}},
		{"415 content type", "text/plain", ev("r415"), false, 415, []string{"r415"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := s.post(t, "", tc.ct, []byte(tc.body), tc.gz)
			var env httpx.Envelope
			if a.status != tc.status || json.Unmarshal(a.body, &env) != nil || env.Error.Code == "" {
				t.Fatalf("status %d, body %s; want %d with an error envelope", a.status, a.body, tc.status)
			}
			if tc.status == 400 && len(env.Error.Details) == 0 {
				t.Errorf("400 without details: %s", a.body)
			}
			if got := s.stored(t, tc.ids...); len(got) != 0 {
				t.Fatalf("refused request stored %v", got)
			}
		})
	}
	n, err := s.count()
	if err != nil || n != 0 {
		t.Fatalf("%d documents in the indices (%v), want none", n, err)
	}
}

func TestIngestBudgetExhaustedIs429(t *testing.T) {
	s := newStack(t, testenv.ES(t), func(c *config.Ingest) {
		c.MaxEvents, c.InflightMaxEvents = 10, 10
		// No flush fires by itself: the first request holds its events until the writer closes.
		c.BulkFlushInterval = time.Hour
		c.AckTimeout = time.Minute
	})
	ten := []byte(strings.Repeat(`{"clientId":"c"}`+"\n", 10))
	first := make(chan answer, 1)
	go func() { first <- s.post(t, "", "application/x-ndjson", ten, false) }()
	for s.metric(t, "spillway_ingest_inflight_events") != 10 {
		time.Sleep(5 * time.Millisecond)
	}
	a := s.post(t, "", "application/x-ndjson", []byte(`{"clientId":"one more"}`), false)
	if a.status != 429 || a.header.Get("Retry-After") != "1" {
		t.Fatalf("over budget: %d %v %s", a.status, a.header, a.body)
	}
	if err := s.h.Drain(testenv.Context(t, time.Minute)); err != nil { // flushes the first request
		t.Fatal(err)
	}
	r := (<-first).created(t)
	if len(s.stored(t, r.IDs...)) != 10 {
		t.Fatal("first request's events not stored")
	}
	if s.metric(t, "spillway_ingest_requests_refused_total", "status", "429") != 1 {
		t.Error("429 not counted")
	}
}

func TestIngestAsyncIsWrittenOnDrain(t *testing.T) {
	s := newStack(t, testenv.ES(t), func(c *config.Ingest) {
		c.BulkFlushInterval = time.Hour // only the drain sends them
		c.AckTimeout = time.Minute
	})
	var ids []string
	for i := 0; i < 5; i++ {
		a := s.post(t, "?ack=async", "application/json", []byte(`[{"clientId":"a"},{"clientId":"b"}]`), false)
		var r ingest.AsyncResponse
		if a.status != 202 || json.Unmarshal(a.body, &r) != nil || len(r.IDs) != 2 {
			t.Fatalf("%d %s", a.status, a.body)
		}
		ids = append(ids, r.IDs...)
	}
	if got := s.stored(t, ids...); len(got) != 0 {
		t.Fatalf("%d events written before the drain; the test cannot show the drain writes them", len(got))
	}
	if err := s.h.Drain(testenv.Context(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := s.stored(t, ids...); len(got) != len(ids) {
		t.Fatalf("%d of %d async events stored after the drain", len(got), len(ids))
	}
	if s.metric(t, "spillway_ingest_events_total", "outcome", "accepted", "ack", "async") != float64(len(ids)) {
		t.Error("async events not counted")
	}
}

func TestIngestConcurrentClientsShareBulkRequests(t *testing.T) {
	s := newStack(t, testenv.ES(t), nil) // production defaults: no linger, up to 8 bulk requests in flight
	const clients, perClient = 200, 10
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perClient; i++ {
				a := s.post(t, "", "application/json", []byte(fmt.Sprintf(`{"clientId":"client-%d"}`, c)), false)
				if a.status != 201 {
					t.Errorf("client %d: %d %s", c, a.status, a.body)
					return
				}
			}
		}()
	}
	wg.Wait()
	events := s.metric(t, "spillway_ingest_events_total", "outcome", "accepted", "ack", "sync")
	bulks := s.metric(t, "spillway_ingest_bulk_requests_total", "result", "ok")
	t.Logf("%d single-event requests from %d concurrent clients: %.0f events in %.0f bulk requests (%.1f events per bulk request)",
		clients*perClient, clients, events, bulks, events/bulks)
	if events != clients*perClient {
		t.Fatalf("%.0f events accepted, want %d", events, clients*perClient)
	}
	// Every request waits for its acknowledgement, so without group commit there would be one
	// bulk request per event. Shared bulk requests make the ratio large.
	if bulks == 0 || events/bulks < 10 {
		t.Fatalf("%.0f bulk requests for %.0f events: not shared", bulks, events)
	}
}

func TestIngestElasticsearchDownAndBack(t *testing.T) {
	cluster := testenv.StartES(t, 1, "512m") // private: this test kills it
	es := testenv.ESAt(t, cluster.Nodes[0].URL())
	s := newStack(t, es, func(c *config.Ingest) { c.AckTimeout = 5 * time.Second })
	ts := time.Now().UTC().Format(time.RFC3339Nano)
	var before []string
	for i := 0; i < 20; i++ {
		before = append(before, fmt.Sprintf("before-%d", i))
	}
	body := func(ids ...string) []byte {
		var b strings.Builder
		for _, id := range ids {
			fmt.Fprintf(&b, `{"id":%q,"clientId":"c","timestamp":%q}`+"\n", id, ts)
		}
		return []byte(b.String())
	}
	s.post(t, "", "application/x-ndjson", body(before...), false).created(t)

	// kill -9: acknowledged events must survive it (translog fsynced before the 201).
	cluster.Nodes[0].Kill(t)
	for i := 0; ; i++ {
		a := s.post(t, "", "application/x-ndjson", body("during"), false)
		if a.status != 503 || a.header.Get("Retry-After") == "" {
			t.Fatalf("with Elasticsearch down: %d %v %s", a.status, a.header, a.body)
		}
		if s.metric(t, "spillway_ingest_breaker_open") == 1 {
			break
		}
		if i > 50 {
			t.Fatal("breaker did not open")
		}
	}
	// Breaker open: refused before the body is read, without waiting for a timeout.
	refused := s.metric(t, "spillway_ingest_requests_refused_total", "status", "503", "reason", "breaker")
	for i := 0; i < 20; i++ {
		if a := s.post(t, "", "application/x-ndjson", body("during"), false); a.status != 503 {
			t.Fatalf("breaker open: %d %s", a.status, a.body)
		}
	}
	if got := s.metric(t, "spillway_ingest_requests_refused_total", "status", "503", "reason", "breaker"); got < refused+20 {
		t.Fatalf("breaker refusals %v -> %v, want 20 more", refused, got)
	}

	cluster.Nodes[0].Start(t)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		a := s.post(t, "", "application/x-ndjson", body("after"), false)
		if a.status == 201 {
			break
		}
		if a.status != 503 || time.Now().After(deadline) {
			t.Fatalf("after restart: %d %s", a.status, a.body)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if s.metric(t, "spillway_ingest_breaker_open") != 0 {
		t.Error("breaker still open after a 201")
	}
	got := s.stored(t, append(before, "after")...)
	for _, id := range append(before, "after") {
		if _, ok := got[id]; !ok {
			t.Errorf("acknowledged event %s lost across kill -9 and restart of Elasticsearch", id)
		}
	}
}
