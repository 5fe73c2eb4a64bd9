package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/netproxy"
	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/client"
)

// These tests run the client against the real ingest and search binaries on a test index
// prefix of the real Elasticsearch.

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBuilds()
	os.Exit(code)
}

type services struct {
	ingest, search *testenv.Service
}

func startServices(t *testing.T) services {
	t.Helper()
	es := testenv.ES(t)
	return services{
		ingest: testenv.StartService(t, "cmd/ingest", es),
		search: testenv.StartService(t, "cmd/search", es, "SPILLWAY_SEARCH_STREAM_POLL=50ms"),
	}
}

func (s services) client(t *testing.T, opts client.Options) *client.Client {
	t.Helper()
	opts.IngestURL = s.ingest.URL
	if opts.SearchURL == "" {
		opts.SearchURL = s.search.URL
	}
	c, err := client.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAgainstTheServices(t *testing.T) {
	svc := startServices(t)
	t.Run("indexer and reads", func(t *testing.T) { testIndexerAndReads(t, svc) })
	t.Run("lost replies", func(t *testing.T) { testLostReplies(t, svc) })
	t.Run("stream", func(t *testing.T) { testStream(t, svc) })
}

// testIndexerAndReads: the server refuses the whole request that holds one event too far in
// the future; the Indexer fails that event with the server's field error and stores the
// others. The reads then return exactly the stored events, page after page.
func testIndexerAndReads(t *testing.T, svc services) {
	ctx := testenv.Context(t, 2*time.Minute)
	c := svc.client(t, client.Options{Ack: client.AckSearchable, Gzip: true})
	ix, err := c.NewIndexer(client.IndexerConfig{FlushEvents: 100, FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	who := testenv.Name("c")
	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	var mu sync.Mutex
	var stored []client.Event
	failed := map[string]error{}
	cb := client.Callbacks{
		OnSuccess: func(e client.Event) { mu.Lock(); stored = append(stored, e); mu.Unlock() },
		OnFailure: func(e client.Event, err error) { mu.Lock(); failed[e.ID] = err; mu.Unlock() },
	}
	for i := range 21 {
		e := client.Event{ID: fmt.Sprintf("%s-%02d", who, i), ClientID: who, Type: "t", Timestamp: base.Add(time.Duration(i) * time.Second),
			Payload: []byte(fmt.Sprintf(`{"i":%d,"note":"<ok> & é"}`, i))}
		if i == 7 {
			e.Timestamp = time.Now().Add(48 * time.Hour)
		}
		if err := ix.Add(ctx, e, cb); err != nil {
			t.Fatal(err)
		}
	}
	if err := ix.Close(ctx); err != nil {
		t.Fatal(err)
	}
	var e *client.Error
	if err := failed[who+"-07"]; len(failed) != 1 || !errors.As(err, &e) || e.Status != 400 || e.Details[0].Field != "timestamp" {
		t.Fatalf("failed %v (%+v); want only event 7, for its timestamp", failed, e)
	}
	if s := ix.Stats(); len(stored) != 20 || s.Stored != 20 || s.Failed != 1 || s.Requests != 2 {
		t.Fatalf("%d stored; stats %+v", len(stored), s)
	}

	q := client.Query{ClientIDs: []string{who}, Limit: 3}
	var ids []string
	for ev, err := range c.Events(ctx, q) {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ev.ID)
	}
	var want []string
	for i := range 21 {
		if i != 7 {
			want = append(want, fmt.Sprintf("%s-%02d", who, i))
		}
	}
	if !slices.Equal(ids, want) {
		t.Fatalf("Events returned %v, want %v", ids, want)
	}
	if n, err := c.Count(ctx, q); err != nil || n != 20 {
		t.Fatalf("count %d %v", n, err)
	}
	got, err := c.Get(ctx, who+"-05")
	if err != nil || got.ClientID != who || !got.Timestamp.Equal(base.Add(5*time.Second)) || string(got.Payload) != `{"i":5,"note":"<ok> & é"}` {
		t.Fatalf("get: %+v (payload %s) %v", got, got.Payload, err)
	}
	if _, err := c.Get(ctx, who+"-07"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("get the refused event: %v", err)
	}
}

// loseReplies forwards requests but drops the answer of every other post (the first, the
// third, ...), `lose` times: the events are stored, and the client never hears it.
type loseReplies struct {
	mu    sync.Mutex
	lose  int
	posts int
}

func (l *loseReplies) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := http.DefaultTransport.RoundTrip(req)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil || req.Method != http.MethodPost || l.lose == 0 {
		return res, err
	}
	if l.posts++; l.posts%2 == 0 {
		return res, err
	}
	l.lose--
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		return nil, fmt.Errorf("the lost reply was %d, not 201", res.StatusCode)
	}
	return nil, errors.New("connection reset (reply lost)")
}

// testLostReplies: a request whose reply is lost is sent again with the same ids and
// timestamps; the server finds its events already stored (duplicates) and stores none twice.
func testLostReplies(t *testing.T, svc services) {
	ctx := testenv.Context(t, 2*time.Minute)
	lost := &loseReplies{lose: 2}
	c := svc.client(t, client.Options{Ack: client.AckSearchable, HTTPClient: &http.Client{Transport: lost}})
	who := testenv.Name("c")

	events := []client.Event{{ClientID: who}, {ClientID: who, Type: "x"}, {ClientID: who}}
	res, err := c.Post(ctx, events)
	if err != nil || res.Accepted != 3 || res.Duplicates != 3 {
		t.Fatalf("post after a lost reply: %+v %v; want all 3 found already stored", res, err)
	}

	ix, err := c.NewIndexer(client.IndexerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if err := ix.Add(ctx, client.Event{ClientID: who}); err != nil {
			t.Fatal(err)
		}
	}
	if err := ix.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if s := ix.Stats(); s.Stored != 4 || s.Duplicates != 4 || s.DuplicatesOnRetry != 4 || s.Retries != 1 || s.Failed != 0 {
		t.Fatalf("indexer after a lost reply: %+v", s)
	}
	if n, err := c.Count(ctx, client.Query{ClientIDs: []string{who}}); err != nil || n != 7 {
		t.Fatalf("count %d %v: each of the 7 events must be stored once", n, err)
	}
}

// streamWatch tells the test when a stream connection has been accepted, and what
// Last-Event-ID each one sent.
type streamWatch struct {
	mu        sync.Mutex
	lastIDs   []string
	connected chan struct{}
}

func (w *streamWatch) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := http.DefaultTransport.RoundTrip(req)
	if err == nil && strings.HasSuffix(req.URL.Path, "/stream") && res.StatusCode == 200 {
		w.mu.Lock()
		w.lastIDs = append(w.lastIDs, req.Header.Get("Last-Event-ID"))
		w.mu.Unlock()
		w.connected <- struct{}{}
	}
	return res, err
}

// testStream: the search service's stream, read through a proxy that is shut down in the
// middle (connections cut, then refused) and started again, delivers every event once; and a
// new stream started with the last token continues from there.
func testStream(t *testing.T, svc services) {
	ctx := testenv.Context(t, 3*time.Minute)
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	target := strings.TrimPrefix(svc.search.URL, "http://")
	proxy, err := netproxy.Start(addr, target, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { proxy.Close() }()
	watch := &streamWatch{connected: make(chan struct{}, 8)}
	c := svc.client(t, client.Options{Ack: client.AckSearchable, SearchURL: "http://" + addr,
		HTTPClient: &http.Client{Transport: watch}, Retry: client.RetryPolicy{MaxDelay: 200 * time.Millisecond}})
	who := testenv.Name("c")
	post := func(from, to int) {
		t.Helper()
		var events []client.Event
		for i := from; i < to; i++ {
			events = append(events, client.Event{ID: fmt.Sprintf("%s-%02d", who, i), ClientID: who})
		}
		if _, err := c.Post(ctx, events); err != nil {
			t.Fatal(err)
		}
	}
	waitConnected := func() {
		t.Helper()
		select {
		case <-watch.connected:
		case <-ctx.Done():
			t.Fatal("the stream did not connect")
		}
	}

	streamCtx, stop := context.WithCancel(ctx)
	defer stop()
	got := make(chan client.StreamEvent, 100) // never blocks the reader: it must see the cut
	ended := make(chan error, 1)
	go func() {
		for ev, err := range c.Stream(streamCtx, client.Query{ClientIDs: []string{who}}, "") {
			if err != nil {
				ended <- err
				return
			}
			got <- ev
		}
	}()
	var ids []string
	var last string
	receive := func(n int) {
		t.Helper()
		for range n {
			select {
			case ev := <-got:
				ids, last = append(ids, ev.Event.ID), ev.LastEventID
			case err := <-ended:
				t.Fatalf("stream ended: %v", err)
			case <-ctx.Done():
				t.Fatalf("received %v, then nothing", ids)
			}
		}
	}

	waitConnected()
	post(0, 5)
	receive(3)
	proxy.Close() // the connection is cut; reconnecting is refused until the proxy is back
	post(5, 10)
	if proxy, err = netproxy.Start(addr, target, 0); err != nil {
		t.Fatal(err)
	}
	waitConnected()
	receive(7)
	stop()

	var want []string
	for i := range 10 {
		want = append(want, fmt.Sprintf("%s-%02d", who, i))
	}
	if sorted := slices.Sorted(slices.Values(ids)); !slices.Equal(sorted, want) {
		t.Fatalf("the stream delivered %v, want each of %v once", ids, want)
	}
	watch.mu.Lock()
	lastIDs := watch.lastIDs
	watch.mu.Unlock()
	if len(lastIDs) != 2 || lastIDs[0] != "" || lastIDs[1] == "" {
		t.Fatalf("stream connections sent Last-Event-ID %q; want none, then the last token", lastIDs)
	}

	// A reader that restarts resumes from its last token: exactly the events after it.
	post(10, 12)
	for ev, err := range c.Stream(ctx, client.Query{ClientIDs: []string{who}}, last) {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ev.Event.ID)
		if len(ids) == 12 {
			break
		}
	}
	// Order is not asserted: ingest may index the events of one request in any order.
	if !slices.Equal(slices.Sorted(slices.Values(ids[10:])), []string{who + "-10", who + "-11"}) {
		t.Fatalf("resumed with %v", ids[10:])
	}
}
