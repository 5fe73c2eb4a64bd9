package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// sseFake answers stream connection n (from 1) with conns[n-1], and records each
// connection's Last-Event-ID.
type sseFake struct {
	mu    sync.Mutex
	last  []string
	conns []func(w http.ResponseWriter, r *http.Request)
}

func (f *sseFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.last = append(f.last, r.Header.Get("Last-Event-ID"))
	n := len(f.last)
	f.mu.Unlock()
	if r.URL.Path != "/api/v1/events/stream" || r.URL.RawQuery != "clientId=c&type=click" || n > len(f.conns) {
		http.Error(w, "unexpected request "+r.URL.String(), 500)
		return
	}
	f.conns[n-1](w, r)
}

func (f *sseFake) lastEventIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.last...)
}

// sse writes raw stream text and flushes it.
func sse(w http.ResponseWriter, text string) {
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
	}
	fmt.Fprint(w, text)
	http.NewResponseController(w).Flush()
}

func msg(n int) string {
	return fmt.Sprintf("id: t%d\ndata: {\"id\":\"e%d\",\"clientId\":\"c\",\"type\":\"click\",\"timestamp\":\"2026-03-09T00:00:0%d.000000Z\"}\n\n", n, n, n)
}

// TestStreamResumesWithoutGapsOrRepeats: across a stream the server ends, one cut in the
// middle of a message and a refused reconnect, every event arrives once, in order: each
// reconnect names the last message received in full, the id-only first message included.
func TestStreamResumesWithoutGapsOrRepeats(t *testing.T) {
	f := &sseFake{conns: []func(http.ResponseWriter, *http.Request){
		func(w http.ResponseWriter, r *http.Request) { // the subscription's token, then the replica shuts down
			sse(w, "retry: 1000\nid: t0\n\n")
		},
		func(w http.ResponseWriter, r *http.Request) { // two events, then the connection is cut mid-message
			sse(w, msg(1)+": heartbeat\n\n"+msg(2)+"id: t3\ndata: {\"id\":\"e3\",")
			panic(http.ErrAbortHandler)
		},
		func(w http.ResponseWriter, r *http.Request) { // too many streams on this replica
			refuse(w, 503, "unavailable", "this instance serves at most 1000 streams", "3")
		},
		func(w http.ResponseWriter, r *http.Request) { // the rest, then nothing until the reader leaves
			sse(w, msg(3)+msg(4))
			<-r.Context().Done()
		},
	}}
	var mu sync.Mutex
	var statuses []int
	c, clk := newClient(t, startFake(t, f), Options{OnAttempt: func(a Attempt) {
		mu.Lock()
		statuses = append(statuses, a.Status)
		mu.Unlock()
	}})
	var got, tokens []string
	for ev, err := range c.Stream(context.Background(), Query{ClientIDs: []string{"c"}, Types: []string{"click"}}, "") {
		if err != nil {
			t.Fatal(err)
		}
		got, tokens = append(got, ev.Event.ID), append(tokens, ev.LastEventID)
		if len(got) == 4 {
			break
		}
	}
	if want := []string{"e1", "e2", "e3", "e4"}; !equal(got, want) || !equal(tokens, []string{"t1", "t2", "t3", "t4"}) {
		t.Fatalf("events %v with tokens %v, want %v", got, tokens, want)
	}
	if want := []string{"", "t0", "t2", "t2"}; !equal(f.lastEventIDs(), want) {
		t.Errorf("connections sent Last-Event-ID %q, want %q", f.lastEventIDs(), want)
	}
	slept := clk.sleeps()
	if len(slept) != 3 {
		t.Fatalf("slept %v, want a delay before each of 3 reconnects", slept)
	}
	within(t, "after the server's retry: 1000", slept[0], time.Second, 1200*time.Millisecond)
	within(t, "after a cut, retry: 1000 still applies", slept[1], time.Second, 1200*time.Millisecond)
	within(t, "after 503 Retry-After: 3", slept[2], 3*time.Second, 3600*time.Millisecond)
	if want := []int{200, 200, 503}; !equal(statuses, want) {
		t.Errorf("observed statuses %v, want %v", statuses, want)
	}
}

// TestStreamResumesFromAToken: a stream started with a token sends it on its first connection.
func TestStreamResumesFromAToken(t *testing.T) {
	f := &sseFake{conns: []func(http.ResponseWriter, *http.Request){
		func(w http.ResponseWriter, r *http.Request) { sse(w, msg(5)); <-r.Context().Done() },
	}}
	c, _ := newClient(t, startFake(t, f), Options{})
	for ev, err := range c.Stream(context.Background(), Query{ClientIDs: []string{"c"}, Types: []string{"click"}}, "t4") {
		if err != nil || ev.Event.ID != "e5" {
			t.Fatalf("%+v %v", ev, err)
		}
		break
	}
	if want := []string{"t4"}; !equal(f.lastEventIDs(), want) {
		t.Errorf("Last-Event-ID %q, want %q", f.lastEventIDs(), want)
	}
}

// TestStreamStopsWhenRefused: a 400 (here: a token of another query) ends the stream with the
// error instead of reconnecting, which would silently skip events.
func TestStreamStopsWhenRefused(t *testing.T) {
	f := &sseFake{conns: []func(http.ResponseWriter, *http.Request){
		func(w http.ResponseWriter, r *http.Request) {
			refuse(w, 400, "invalid_request", "bad token", "", FieldError{Index: -1, Field: "Last-Event-ID", Message: "token of another query"})
		},
	}}
	c, _ := newClient(t, startFake(t, f), Options{})
	n := 0
	for _, err := range c.Stream(context.Background(), Query{ClientIDs: []string{"c"}, Types: []string{"click"}}, "foreign") {
		var e *Error
		if !errors.As(err, &e) || e.Status != 400 || e.Details[0].Field != "Last-Event-ID" {
			t.Fatalf("error %v", err)
		}
		n++
	}
	if n != 1 || len(f.lastEventIDs()) != 1 {
		t.Fatalf("%d errors, %d connections", n, len(f.lastEventIDs()))
	}
	for _, err := range c.Stream(context.Background(), Query{ClientIDs: []string{"c"}, Limit: 10}, "") {
		if err == nil {
			t.Fatal("a stream with a page size started")
		}
	}

	// A 200 that is not a stream (a wrong URL) would be the same answer at every reconnect.
	f.conns = append(f.conns, func(w http.ResponseWriter, r *http.Request) { reply(w, 200, nil, map[string]any{"events": []Event{}}) })
	for _, err := range c.Stream(context.Background(), Query{ClientIDs: []string{"c"}, Types: []string{"click"}}, "") {
		if !errors.Is(err, errMalformed) || len(f.lastEventIDs()) != 2 {
			t.Fatalf("error %v after %d connections", err, len(f.lastEventIDs()))
		}
	}
}

// TestStreamReconnectsWhenSilent: a connection that delivers nothing, not even heartbeats, for
// StreamIdleTimeout is dropped and resumed.
func TestStreamReconnectsWhenSilent(t *testing.T) {
	f := &sseFake{conns: []func(http.ResponseWriter, *http.Request){
		func(w http.ResponseWriter, r *http.Request) { sse(w, "id: t0\n\n"); <-r.Context().Done() },
		func(w http.ResponseWriter, r *http.Request) { sse(w, msg(1)); <-r.Context().Done() },
	}}
	c, _ := newClient(t, startFake(t, f), Options{StreamIdleTimeout: 10 * time.Millisecond})
	for ev, err := range c.Stream(context.Background(), Query{ClientIDs: []string{"c"}, Types: []string{"click"}}, "") {
		if err != nil || ev.Event.ID != "e1" {
			t.Fatalf("%+v %v", ev, err)
		}
		break
	}
	if want := []string{"", "t0"}; !equal(f.lastEventIDs(), want) {
		t.Errorf("Last-Event-ID %q, want %q", f.lastEventIDs(), want)
	}
}

// TestStreamEndsWithItsContext: cancelling ends the iteration with the context's error.
func TestStreamEndsWithItsContext(t *testing.T) {
	f := &sseFake{conns: []func(http.ResponseWriter, *http.Request){
		func(w http.ResponseWriter, r *http.Request) { sse(w, msg(1)); <-r.Context().Done() },
	}}
	c, _ := newClient(t, startFake(t, f), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var last error
	for ev, err := range c.Stream(ctx, Query{ClientIDs: []string{"c"}, Types: []string{"click"}}, "") {
		if err != nil {
			last = err
			continue
		}
		if ev.Event.ID == "e1" {
			cancel()
		}
	}
	if !errors.Is(last, context.Canceled) {
		t.Fatalf("ended with %v", last)
	}
}
