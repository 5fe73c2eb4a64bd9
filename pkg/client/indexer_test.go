package client

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// outcomes collects what the callbacks of events "e0", "e1", ... were told.
type outcomes struct {
	mu   sync.Mutex
	ok   map[string]Event
	errs map[string]error
	done chan string // every outcome's id, as it arrives
}

func newOutcomes() *outcomes {
	return &outcomes{ok: map[string]Event{}, errs: map[string]error{}, done: make(chan string, 10000)}
}

func (o *outcomes) callbacks() Callbacks {
	return Callbacks{
		OnSuccess: func(e Event) {
			o.mu.Lock()
			o.ok[e.ID] = e
			o.mu.Unlock()
			o.done <- e.ID
		},
		OnFailure: func(e Event, err error) {
			o.mu.Lock()
			o.errs[e.ID] = err
			o.mu.Unlock()
			o.done <- e.ID
		},
	}
}

func (o *outcomes) succeeded() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var ids []string
	for id := range o.ok {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (o *outcomes) failed() map[string]error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return maps.Clone(o.errs)
}

// addAll adds events e0..e(n-1) of client "c" and closes the indexer.
func addAll(t *testing.T, ix Indexer, n int, o *outcomes) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		if err := ix.Add(ctx, Event{ID: fmt.Sprintf("e%d", i), ClientID: "c"}, o.callbacks()); err != nil {
			t.Fatal(err)
		}
	}
	if err := ix.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func newIndexer(t *testing.T, c *Client, cfg IndexerConfig) Indexer {
	t.Helper()
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = time.Hour // batches are cut by count or by Close, never by time
	}
	ix, err := c.NewIndexer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func ids(p posted) []string {
	out := make([]string, len(p.Events))
	for i, e := range p.Events {
		out[i] = e.ID
	}
	return out
}

// TestIndexerRoutesFieldErrors: events named in a 400 invalid_request or a 403 fail with their
// own details; the server stored nothing of the request, so the others are sent again, alone,
// and succeed.
func TestIndexerRoutesFieldErrors(t *testing.T) {
	for _, tc := range []struct {
		status  int
		code    string
		details []FieldError
		failed  map[string]int // id -> details it fails with
	}{
		{400, "invalid_request", []FieldError{
			{Index: 1, Field: "clientId", Message: "required"},
			{Index: 3, Field: "timestamp", Message: "is more than 24h in the future (ingest.max_future_skew)"},
			{Index: 3, Field: "payload", Message: `duplicate key "a" in payload`},
			{Index: -1, Field: "wait", Message: "a parameter problem names no event"},
		}, map[string]int{"e1": 1, "e3": 2}},
		{403, "forbidden", []FieldError{{Index: 4, Field: "clientId", Message: `API key "k" may not post events for clientId "c"`}},
			map[string]int{"e4": 1}},
	} {
		t.Run(tc.code, func(t *testing.T) {
			f := &ingestFake{answer: func(n int, p posted, w http.ResponseWriter) {
				if n == 1 {
					refuse(w, tc.status, tc.code, "some events invalid; nothing was stored", "", tc.details...)
					return
				}
				stored(w, p)
			}}
			c, clk := newClient(t, startFake(t, f), Options{})
			ix := newIndexer(t, c, IndexerConfig{})
			o := newOutcomes()
			addAll(t, ix, 5, o)

			reqs := f.requests()
			var want []string
			for i := range 5 {
				if id := fmt.Sprintf("e%d", i); tc.failed[id] == 0 {
					want = append(want, id)
				}
			}
			if len(reqs) != 2 || len(reqs[0].Events) != 5 || !equal(ids(reqs[1]), want) || !equal(o.succeeded(), want) {
				t.Fatalf("requests %d, second sent %v, succeeded %v; want %v", len(reqs), ids(reqs[len(reqs)-1]), o.succeeded(), want)
			}
			failed := o.failed()
			for id, n := range tc.failed {
				var e *Error
				if !errors.As(failed[id], &e) || e.Status != tc.status || e.Code != tc.code || len(e.Details) != n || e.Details[0].Index != 0 {
					t.Errorf("%s failed with %v (%+v), want its %d details", id, failed[id], e, n)
				}
			}
			if len(failed) != len(tc.failed) || len(clk.sleeps()) != 0 {
				t.Errorf("failed %v, slept %v", failed, clk.sleeps())
			}
			if s := ix.Stats(); s != (IndexerStats{Added: 5, Stored: uint64(len(want)), Failed: uint64(len(tc.failed)), Requests: 2}) {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

// TestIndexerRejectedByElasticsearch: with 400 rejected the events not named are stored: they
// succeed without another request. When the details were cut at their limit, which others were
// refused is unknown: they are sent again (safe: stored ones come back as duplicates).
func TestIndexerRejectedByElasticsearch(t *testing.T) {
	for _, tc := range []struct {
		events, named, requests int
	}{{5, 1, 1}, {101, 100, 2}} {
		f := &ingestFake{answer: func(n int, p posted, w http.ResponseWriter) {
			if n > 1 {
				storedDup(w, p, len(p.Events))
				return
			}
			var d []FieldError
			for i := range tc.named {
				d = append(d, FieldError{Index: i, Message: "rejected by Elasticsearch (status 400): mapper_parsing_exception"})
			}
			refuse(w, 400, "rejected", "Elasticsearch rejected some events; the others are stored", "", d...)
		}}
		c, _ := newClient(t, startFake(t, f), Options{})
		ix := newIndexer(t, c, IndexerConfig{})
		o := newOutcomes()
		addAll(t, ix, tc.events, o)
		if n := len(f.requests()); n != tc.requests || len(o.succeeded()) != tc.events-tc.named || len(o.failed()) != tc.named {
			t.Errorf("%d events, %d named: %d requests, %d succeeded, %d failed", tc.events, tc.named, n, len(o.succeeded()), len(o.failed()))
		}
		if err := o.failed()["e0"]; !errors.As(err, new(*Error)) {
			t.Errorf("e0 failed with %v", err)
		}
	}
}

// TestIndexerCountsDuplicatesOnRetry: the stats tell the duplicates a retry found (the lost
// answer's attempt had stored the batch) from those a first attempt found (the server had
// them before), although the server reports only a count per request.
func TestIndexerCountsDuplicatesOnRetry(t *testing.T) {
	f := &ingestFake{answer: func(n int, p posted, w http.ResponseWriter) {
		switch first := p.Events[0].ID; {
		case first == "e0" && n == 1:
			hangUp(w) // stored, answer lost
		case first == "e0":
			storedDup(w, p, len(p.Events))
		default:
			storedDup(w, p, 2) // e.g. found by ingest's own resend to Elasticsearch
		}
	}}
	c, _ := newClient(t, startFake(t, f), Options{})
	ix := newIndexer(t, c, IndexerConfig{FlushEvents: 3, Workers: 1})
	o := newOutcomes()
	addAll(t, ix, 6, o)
	want := IndexerStats{Added: 6, Stored: 6, Duplicates: 5, DuplicatesOnRetry: 3, Requests: 3, Retries: 1}
	if s := ix.Stats(); s != want || len(o.succeeded()) != 6 {
		t.Errorf("stats %+v, want %+v; %d succeeded", s, want, len(o.succeeded()))
	}
}

// TestIndexerSplitsTooLarge: a batch over the server's limits (413) is sent in halves until
// each fits; a single event that does not fit fails.
func TestIndexerSplitsTooLarge(t *testing.T) {
	f := &ingestFake{answer: func(n int, p posted, w http.ResponseWriter) {
		if len(p.Events) > 2 || p.Events[0].ID == "e0" {
			refuse(w, 413, "too_large", "more than 2 events in one request (ingest.max_events)", "")
			return
		}
		stored(w, p)
	}}
	c, _ := newClient(t, startFake(t, f), Options{})
	ix := newIndexer(t, c, IndexerConfig{})
	o := newOutcomes()
	addAll(t, ix, 5, o)
	var sizes []int
	for _, p := range f.requests() {
		sizes = append(sizes, len(p.Events))
	}
	// [e0..e4] → [e0 e1] → [e0] fails, [e1] ok; [e2 e3 e4] → [e2], [e3 e4]
	if want := []int{5, 2, 1, 1, 3, 1, 2}; !equal(sizes, want) {
		t.Errorf("request sizes %v, want %v", sizes, want)
	}
	var e *Error
	if !equal(o.succeeded(), []string{"e1", "e2", "e3", "e4"}) || !errors.As(o.failed()["e0"], &e) || e.Status != 413 {
		t.Errorf("succeeded %v, failed %v", o.succeeded(), o.failed())
	}
}

// TestIndexerCutsBatches: by event count and by bytes, never above either.
func TestIndexerCutsBatches(t *testing.T) {
	f := &ingestFake{answer: func(n int, p posted, w http.ResponseWriter) { stored(w, p) }}
	c, _ := newClient(t, startFake(t, f), Options{})
	line, _ := c.encode(&Event{ID: "e0", ClientID: "c"}) // every event below has this size
	for _, tc := range []struct {
		cfg  IndexerConfig
		want []int
	}{
		{IndexerConfig{FlushEvents: 3}, []int{1, 3, 3}},
		{IndexerConfig{FlushBytes: 2*len(line) + 1}, []int{1, 2, 2, 2}},
	} {
		before := len(f.requests())
		o := newOutcomes()
		addAll(t, newIndexer(t, c, tc.cfg), 7, o)
		var sizes []int
		for _, p := range f.requests()[before:] {
			sizes = append(sizes, len(p.Events))
		}
		slices.Sort(sizes)
		if !equal(sizes, tc.want) || len(o.succeeded()) != 7 {
			t.Errorf("%+v: request sizes %v, want %v; %d succeeded", tc.cfg, sizes, tc.want, len(o.succeeded()))
		}
	}
}

// TestIndexerFlushesByInterval: a lone event is sent once it has waited FlushInterval, without
// Close.
func TestIndexerFlushesByInterval(t *testing.T) {
	f := &ingestFake{answer: func(n int, p posted, w http.ResponseWriter) { stored(w, p) }}
	c, _ := newClient(t, startFake(t, f), Options{})
	ix := newIndexer(t, c, IndexerConfig{FlushInterval: time.Millisecond})
	defer ix.Close(context.Background())
	o := newOutcomes()
	if err := ix.Add(context.Background(), Event{ID: "e0", ClientID: "c"}, o.callbacks()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-o.done:
	case <-time.After(30 * time.Second): // a guard against a hang, not a measurement
		t.Fatal("the event was not sent without Close")
	}
}

// TestIndexerCloseDrains: Close sends what is queued and returns once every event has its
// outcome; Add after Close fails.
func TestIndexerCloseDrains(t *testing.T) {
	f := &ingestFake{answer: func(n int, p posted, w http.ResponseWriter) { stored(w, p) }}
	c, _ := newClient(t, startFake(t, f), Options{})
	ix := newIndexer(t, c, IndexerConfig{})
	o := newOutcomes()
	addAll(t, ix, 10, o)
	if len(o.succeeded()) != 10 || len(f.requests()) != 1 {
		t.Fatalf("after Close: %d succeeded in %d requests", len(o.succeeded()), len(f.requests()))
	}
	if err := ix.Add(context.Background(), Event{ClientID: "c"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Add after Close: %v", err)
	}
	if err := ix.Close(context.Background()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestIndexerCloseGivesUp: when Close's context ends while a batch is being retried, the
// retries stop and each event fails, exactly once, with that context's error.
func TestIndexerCloseGivesUp(t *testing.T) {
	f := &ingestFake{answer: func(n int, p posted, w http.ResponseWriter) { refuse(w, 503, "unavailable", "down", "1") }}
	c, _ := newClient(t, startFake(t, f), Options{})
	c.sleep = func(ctx context.Context, d time.Duration) error { <-ctx.Done(); return ctx.Err() } // retry "forever"
	ix := newIndexer(t, c, IndexerConfig{})
	o := newOutcomes()
	for i := range 3 {
		if err := ix.Add(context.Background(), Event{ID: fmt.Sprintf("e%d", i), ClientID: "c"}, o.callbacks()); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := ix.Close(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close: %v", err)
	}
	failed := o.failed()
	for id, err := range failed {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s failed with %v", id, err)
		}
	}
	if len(failed) != 3 || len(o.succeeded()) != 0 || len(o.done) != 3 {
		t.Errorf("%d failed, %d succeeded, %d callbacks; want each of 3 events to fail once", len(failed), len(o.succeeded()), len(o.done))
	}
}

// TestIndexerBufferIsBounded: while the server holds every request, the buffer fills; then Add
// fails at once (FailWhenFull) or waits until an outcome frees room.
func TestIndexerBufferIsBounded(t *testing.T) {
	for _, failWhenFull := range []bool{true, false} {
		release := make(chan struct{})
		f := &ingestFake{answer: func(n int, p posted, w http.ResponseWriter) {
			<-release
			stored(w, p)
		}}
		c, _ := newClient(t, startFake(t, f), Options{})
		line, _ := c.encode(&Event{ID: "e0", ClientID: "c"})
		ix := newIndexer(t, c, IndexerConfig{FlushEvents: 1, FlushBytes: len(line), MaxBufferedBytes: 3 * len(line),
			Workers: 1, FailWhenFull: failWhenFull})
		o := newOutcomes()
		ctx := context.Background()
		for i := range 3 {
			if err := ix.Add(ctx, Event{ID: fmt.Sprintf("e%d", i), ClientID: "c"}, o.callbacks()); err != nil {
				t.Fatalf("failWhenFull %v: Add %d: %v", failWhenFull, i, err)
			}
		}
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		err := ix.Add(cancelled, Event{ID: "e3", ClientID: "c"}, o.callbacks())
		if failWhenFull && !errors.Is(err, ErrBufferFull) || !failWhenFull && !errors.Is(err, context.Canceled) {
			t.Fatalf("failWhenFull %v: Add to a full buffer: %v", failWhenFull, err)
		}
		added := make(chan error, 1)
		if !failWhenFull {
			go func() { added <- ix.Add(ctx, Event{ID: "e3", ClientID: "c"}, o.callbacks()) }() // waits for room
		}
		close(release)
		if !failWhenFull {
			if err := <-added; err != nil {
				t.Fatalf("Add waiting for room: %v", err)
			}
		}
		if err := ix.Close(ctx); err != nil {
			t.Fatal(err)
		}
		want := []string{"e0", "e1", "e2"}
		if !failWhenFull {
			want = append(want, "e3")
		}
		if !equal(o.succeeded(), want) || ix.Stats().Added != uint64(len(want)) {
			t.Errorf("failWhenFull %v: succeeded %v, stats %+v", failWhenFull, o.succeeded(), ix.Stats())
		}
	}
}

func TestIndexerRefusesAnEventLargerThanTheBuffer(t *testing.T) {
	c, _ := New(Options{})
	ix, err := c.NewIndexer(IndexerConfig{FlushBytes: 1024, MaxBufferedBytes: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close(context.Background())
	big := []byte(`{"x":"` + string(make([]byte, 2000)) + `"}`)
	for i := range big[6 : len(big)-2] {
		big[6+i] = 'a'
	}
	if err := ix.Add(context.Background(), Event{ClientID: "c", Payload: big}); err == nil {
		t.Fatal("Add accepted an event that can never fit the buffer")
	}
	if _, err := c.NewIndexer(IndexerConfig{FlushBytes: 2048, MaxBufferedBytes: 1024}); err == nil {
		t.Fatal("NewIndexer accepted a buffer smaller than one batch")
	}
}
