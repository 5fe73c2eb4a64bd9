package loadgen

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// fakeStreams serves GET /api/v1/events/stream like search: the subscription's token first,
// then whatever the test sends to a client's channel.
type fakeStreams struct {
	mu      sync.Mutex
	clients map[string]chan string // data lines; closing one ends that stream
	ready   sync.WaitGroup
}

func (f *fakeStreams) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	client := r.URL.Query().Get("clientId")
	f.mu.Lock()
	ch := f.clients[client]
	f.mu.Unlock()
	if r.URL.Path != "/api/v1/events/stream" || ch == nil {
		http.Error(w, `{"error":{"code":"invalid_request"}}`, http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fmt.Fprint(w, "retry: 1000\nid: start\n\n")
	w.(http.Flusher).Flush()
	for {
		select {
		case data, ok := <-ch:
			if !ok {
				return
			}
			fmt.Fprintf(w, "id: tok\ndata: %s\n\n", data)
			w.(http.Flusher).Flush()
		case <-r.Context().Done():
			return
		}
	}
}

func sseEvent(id, client string, ts time.Time) string {
	return fmt.Sprintf(`{"id":%q,"clientId":%q,"type":"load","timestamp":%q,"ingestedAt":%q,"payload":{"seq":1}}`,
		id, client, ts.Format(time.RFC3339Nano), ts.Format(time.RFC3339Nano))
}

// TestStreamsCheckExactlyOnceAndTimeDeliveries: the readers time each event from its timestamp
// to its receipt, and the result names duplicates, events on another client's stream, missing
// and unacknowledged events, and streams that ended early.
func TestStreamsCheckExactlyOnceAndTimeDeliveries(t *testing.T) {
	f := &fakeStreams{clients: map[string]chan string{}}
	for i := 0; i < 3; i++ {
		f.clients[fmt.Sprintf("c-%d", i)] = make(chan string)
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	now := time.Date(2026, 3, 9, 12, 0, 0, 0, time.UTC)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a guard against hanging
	defer cancel()
	s, err := OpenStreams(ctx, StreamConfig{SearchURL: srv.URL, Streams: 3, ClientPrefix: "c-", Clock: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// Sends on the unbuffered channels return once the server handler took the line; Await then
	// waits for the reader.
	f.clients["c-0"] <- sseEvent("a", "c-0", now.Add(-40*time.Millisecond))
	f.clients["c-1"] <- sseEvent("b", "c-1", now.Add(-80*time.Millisecond))
	f.clients["c-2"] <- sseEvent("c", "c-2", now.Add(-120*time.Millisecond))
	if err := s.Await(ctx, []string{"a", "b", "c"}); err != nil {
		t.Fatal(err)
	}
	r := s.Result([]string{"a", "b", "c"})
	if !r.ExactlyOnce() || r.Delivered != 3 || r.Latency.N != 3 || r.Latency.P50 != 80 || r.Latency.Max != 120 || r.Streams != 3 {
		t.Fatalf("clean run: %+v", r)
	}

	f.clients["c-0"] <- sseEvent("a", "c-0", now) // again
	f.clients["c-0"] <- sseEvent("sync0", "c-0", now)
	f.clients["c-1"] <- sseEvent("d", "c-2", now)     // another client's event
	f.clients["c-2"] <- sseEvent("x", "c-2", now)     // never acknowledged
	f.clients["c-2"] <- `not an event`                // malformed
	f.clients["c-2"] <- sseEvent("sync2", "c-2", now) // each stream's last line: once it is in, all are
	if err := s.Await(ctx, []string{"sync0", "d", "sync2"}); err != nil {
		t.Fatal(err)
	}
	close(f.clients["c-1"]) // the server ends one stream
	for deadline := time.Now().Add(30 * time.Second); s.ended.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the ended stream was not noticed")
		}
	}
	r = s.Result([]string{"a", "b", "c", "d", "e", "sync0", "sync2"})
	want := StreamResult{Streams: 3, Delivered: 7, Duplicates: 1, WrongClient: 1, Missing: 1, Unacknowledged: 1, Ended: 1, Malformed: 1}
	r.Latency = Percentiles{}
	if r != want || r.ExactlyOnce() {
		t.Fatalf("got %+v, want %+v", r, want)
	}

	// Await gives up with its context.
	short, stop := context.WithCancel(ctx)
	stop()
	if err := s.Await(short, []string{"never"}); err == nil {
		t.Fatal("Await of an event that never comes returned nil")
	}
}

func TestOpenStreamsFailsOnARefusedSubscription(t *testing.T) {
	f := &fakeStreams{clients: map[string]chan string{"c-0": make(chan string)}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := OpenStreams(ctx, StreamConfig{SearchURL: srv.URL, Streams: 2, ClientPrefix: "c-"}); err == nil {
		t.Fatal("c-1's stream was refused; OpenStreams returned no error")
	}
}
