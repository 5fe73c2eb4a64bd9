package esstore_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/event"
)

func bulkWriter(t *testing.T, cfg config.Elasticsearch, bc esstore.BulkConfig) (*esstore.Store, *esstore.BulkWriter) {
	t.Helper()
	s, err := esstore.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bc.MaxConcurrent == 0 {
		bc.MaxConcurrent = 2
	}
	if bc.FlushBytes == 0 {
		bc.FlushBytes = 1 << 20
	}
	w, err := s.NewBulkWriter(bc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	return s, w
}

func newEvent(client string, payload string) event.Event {
	now := event.Truncate(time.Now())
	e := event.Event{ID: event.NewID(), ClientID: client, Type: "test", Timestamp: now, IngestedAt: now}
	if payload != "" {
		e.Payload = json.RawMessage(payload)
	}
	return e
}

func TestBulkWriteCreatesDuplicatesAndRejects(t *testing.T) {
	cfg := testenv.ES(t)
	ctx := testenv.Context(t, time.Minute)
	var flushes atomic.Int64
	s, w := bulkWriter(t, cfg, esstore.BulkConfig{OnFlush: func(f event.Flush) {
		if f.Failed() || f.Bytes <= 0 {
			t.Errorf("flush %+v", f)
		}
		flushes.Add(1)
	}})
	if err := s.InstallTemplate(ctx); err != nil {
		t.Fatal(err)
	}
	good := newEvent("c1", `{"b":"<&>","n":123456789012345678901234567890}`)
	// Deeper than the flattened field's depth_limit: the mapping refuses it, whatever ingest's
	// own validation would have said.
	tooDeep := newEvent("c1", strings.Repeat(`{"a":`, 21)+"1"+strings.Repeat("}", 21))
	out, err := w.Write(ctx, []event.Event{good, tooDeep}, false)
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	if out[0].Result != event.Created || out[0].Attempts != 1 {
		t.Errorf("good event: %+v", out[0])
	}
	if out[1].Result != event.Rejected || out[1].Status != 400 || !strings.Contains(out[1].Reason, "document_parsing_exception") {
		t.Errorf("too deep event: %+v", out[1])
	}

	got, err := s.Get(ctx, good.ID, time.Time{})
	if errors.Is(err, event.ErrNotFound) {
		if err := s.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		got, err = s.Get(ctx, good.ID, time.Time{})
	}
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if string(got.Payload) != string(good.Payload) || !got.Timestamp.Equal(good.Timestamp) || got.ClientID != "c1" {
		t.Errorf("stored %+v, want %+v", got, good)
	}

	// The same id again, alone or with a new event: a duplicate, not an error.
	fresh := newEvent("c2", "")
	out, err = w.Write(ctx, []event.Event{good, fresh}, false)
	if err != nil || out[0].Result != event.Duplicate || out[1].Result != event.Created {
		t.Fatalf("rewrite: %+v %v", out, err)
	}
	if flushes.Load() == 0 {
		t.Error("OnFlush never called")
	}
}

func TestBulkWriteSearchableIsVisibleAtOnce(t *testing.T) {
	cfg := testenv.ES(t)
	// A refresh interval long enough that an event written without wait_for is very unlikely to
	// be visible right away; wait_for still answers within it.
	cfg.RefreshInterval = 3 * time.Second
	ctx := testenv.Context(t, time.Minute)
	s, w := bulkWriter(t, cfg, esstore.BulkConfig{})
	if err := s.InstallTemplate(ctx); err != nil {
		t.Fatal(err)
	}
	e := newEvent("c", "")
	out, err := w.Write(ctx, []event.Event{e}, true)
	if err != nil || out[0].Result != event.Created {
		t.Fatalf("Write: %+v %v", out, err)
	}
	if _, err := s.Get(ctx, e.ID, time.Time{}); err != nil { // Get is a search: no realtime get
		t.Fatalf("not searchable after wait_for: %v", err)
	}
}

func TestBulkWritersShareRequests(t *testing.T) {
	cfg := testenv.ES(t)
	ctx := testenv.Context(t, time.Minute)
	var requests atomic.Int64
	// No linger: the first writers are sent at once, the others gather while those are in flight.
	s, w := bulkWriter(t, cfg, esstore.BulkConfig{OnFlush: func(event.Flush) { requests.Add(1) }})
	if err := s.InstallTemplate(ctx); err != nil {
		t.Fatal(err)
	}
	const writers = 100
	var wg sync.WaitGroup
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := w.Write(ctx, []event.Event{newEvent(fmt.Sprint("c", i), "")}, false)
			if err != nil || out[0].Result != event.Created {
				t.Errorf("Write: %+v %v", out, err)
			}
		}()
	}
	wg.Wait()
	if n := requests.Load(); n*4 > writers {
		t.Errorf("%d concurrent single-event writes took %d bulk requests; want far fewer", writers, n)
	} else {
		t.Logf("%d writes, %d bulk requests", writers, n)
	}
}

func TestBulkCloseDrains(t *testing.T) {
	cfg := testenv.ES(t)
	ctx := testenv.Context(t, time.Minute)
	// The linger never ends in this test: only Close can send the events.
	s, w := bulkWriter(t, cfg, esstore.BulkConfig{Linger: time.Hour})
	if err := s.InstallTemplate(ctx); err != nil {
		t.Fatal(err)
	}
	e := newEvent("c", "")
	done := make(chan error, 1)
	go func() {
		out, err := w.Write(ctx, []event.Event{e}, false)
		if err == nil && out[0].Result != event.Created {
			err = fmt.Errorf("outcome %+v", out[0])
		}
		done <- err
	}()
	// Wait until the event sits in the indexer (its Write is blocked on the flush).
	for w.Queued() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Write during Close: %v", err)
	}
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, e.ID, time.Time{}); err != nil {
		t.Fatalf("drained event not stored: %v", err)
	}
	_, err := w.Write(ctx, []event.Event{newEvent("c", "")}, false)
	if !errors.Is(err, event.ErrUnavailable) {
		t.Fatalf("Write after Close: %v", err)
	}
}

func TestBulkWriteUnreachableIsPendingAtDeadline(t *testing.T) {
	cfg := testenv.DefaultES(fmt.Sprintf("http://127.0.0.1:%d", testenv.FreePort(t)))
	var failed atomic.Int64
	_, w := bulkWriter(t, cfg, esstore.BulkConfig{OnFlush: func(f event.Flush) {
		if f.Failed() && f.Err != nil {
			failed.Add(1)
		}
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	out, err := w.Write(ctx, []event.Event{newEvent("c", ""), newEvent("c", "")}, false)
	if !errors.Is(err, event.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	for _, o := range out {
		if o.Result != event.Pending || o.Attempts < 2 || !strings.Contains(o.Reason, "connect") {
			t.Errorf("outcome %+v: want pending after retries with the transport error", o)
		}
	}
	if failed.Load() == 0 {
		t.Error("no failed flush reported")
	}
}

// fakeBulk is an HTTP server speaking just enough of the bulk API to script per-item answers:
// it tests Spillway's retry and deadline handling, not Elasticsearch.
func fakeBulk(t *testing.T, answer func(call int, ids []string) string) string {
	t.Helper()
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ids []string
		sc := bufio.NewScanner(r.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for line := 0; sc.Scan(); line++ {
			if line%2 == 0 {
				var meta map[string]struct {
					ID string `json:"_id"`
				}
				_ = json.Unmarshal(sc.Bytes(), &meta)
				ids = append(ids, meta["create"].ID)
			}
		}
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, answer(int(calls.Add(1)), ids))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestBulkRetriesItemsAnswered429(t *testing.T) {
	events := []event.Event{newEvent("a", ""), newEvent("b", ""), newEvent("c", "")}
	var refused atomic.Bool
	url := fakeBulk(t, func(call int, ids []string) string {
		items := make([]string, len(ids))
		for i, id := range ids {
			items[i] = `{"create":{"status":201}}`
			// The client does not retry per-item 429s (only whole requests): Write must.
			if id == events[1].ID && refused.CompareAndSwap(false, true) {
				items[i] = `{"create":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}}`
			}
		}
		return `{"errors":true,"items":[` + strings.Join(items, ",") + `]}`
	})
	_, w := bulkWriter(t, testenv.DefaultES(url), esstore.BulkConfig{})
	ctx := testenv.Context(t, 10*time.Second)
	out, err := w.Write(ctx, events, false)
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range out {
		wantAttempts := 1
		if i == 1 {
			wantAttempts = 2
		}
		if o.Result != event.Created || o.Attempts != wantAttempts {
			t.Errorf("event %d: %+v, want created after %d attempts", i, o, wantAttempts)
		}
	}
}

func TestBulkNeverWaitsForAMissingCallback(t *testing.T) {
	// A 200 answer without items: the indexer calls no callback for the event at all.
	url := fakeBulk(t, func(int, []string) string { return `{"errors":false,"items":[]}` })
	_, w := bulkWriter(t, testenv.DefaultES(url), esstore.BulkConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	out, err := w.Write(ctx, []event.Event{newEvent("a", "")}, false)
	if !errors.Is(err, event.ErrUnavailable) || out[0].Result != event.Pending {
		t.Fatalf("Write = %+v, %v; want pending and unavailable at the deadline", out, err)
	}
}

// A write-blocked index (index.blocks.write, as an operator sets it; Elasticsearch answers each
// item 403 cluster_block_exception) is the cluster refusing writes, not a bad event: the items
// stay Pending and are retried — ingest answers 503 — and are written once the block is gone.
// Classifying them as Rejected made ingest answer 400, telling clients to drop valid events.
func TestBulkWriteBlockedIndexIsRetried(t *testing.T) {
	cfg := testenv.ES(t)
	ctx := testenv.Context(t, time.Minute)
	var flushes atomic.Int64
	s, w := bulkWriter(t, cfg, esstore.BulkConfig{OnFlush: func(event.Flush) { flushes.Add(1) }})
	if err := s.InstallTemplate(ctx); err != nil {
		t.Fatal(err)
	}
	first := newEvent("c", "")
	if out, err := w.Write(ctx, []event.Event{first}, false); err != nil || out[0].Result != event.Created {
		t.Fatalf("Write: %+v %v", out, err)
	}
	index := s.IndexFor(first.Timestamp)
	setBlock := func(v string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPut, cfg.URLs[0]+"/"+index+"/_settings", strings.NewReader(`{"index.blocks.write":`+v+`}`))
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("set index.blocks.write=%s: %v %v", v, res, err)
		}
		res.Body.Close()
	}
	setBlock("true")
	t.Cleanup(func() { setBlock("null") })

	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	e := newEvent("c", "")
	out, err := w.Write(short, []event.Event{e}, false)
	if !errors.Is(err, event.ErrUnavailable) || out[0].Result != event.Pending || out[0].Status != 403 ||
		!strings.Contains(out[0].Reason, "cluster_block_exception") {
		t.Fatalf("blocked: %+v %v; want pending with the block as the reason", out, err)
	}

	// Blocked while a Write is retrying, then unblocked: the event is written.
	done := make(chan []event.Outcome, 1)
	before := flushes.Load()
	go func() { out, _ := w.Write(ctx, []event.Event{e}, false); done <- out }()
	for flushes.Load() == before { // its first attempt has been answered (blocked)
		time.Sleep(10 * time.Millisecond)
	}
	setBlock("null")
	out = <-done
	if out[0].Result != event.Created || out[0].Attempts < 2 {
		t.Fatalf("after the block: %+v; want created after retries", out[0])
	}
}
