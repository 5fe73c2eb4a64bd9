package client_test

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spillway/spillway/pkg/client"
)

// This example batches events with an Indexer. Each event's callbacks learn its outcome: the
// event without a clientId is refused with the field error that names it, and the others,
// which the server did not store with it, are sent again without it and stored.
func Example() {
	url, stop := fakeSpillway() // stands in for ingest (:8080) and search (:8081)
	defer stop()

	c, err := client.New(client.Options{IngestURL: url, SearchURL: url})
	if err != nil {
		log.Fatal(err)
	}
	ix, err := c.NewIndexer(client.IndexerConfig{FlushEvents: 500, FlushInterval: 200 * time.Millisecond})
	if err != nil {
		log.Fatal(err)
	}
	var mu sync.Mutex
	var lines []string
	report := client.Callbacks{
		OnSuccess: func(e client.Event) {
			mu.Lock()
			defer mu.Unlock()
			lines = append(lines, "stored "+e.ID)
		},
		OnFailure: func(e client.Event, err error) {
			mu.Lock()
			defer mu.Unlock()
			lines = append(lines, fmt.Sprintf("refused %s: %v", e.ID, err))
		},
	}
	ctx := context.Background()
	for _, e := range []client.Event{
		{ID: "order-1", ClientID: "shop-3", Type: "order.created", Payload: json.RawMessage(`{"total":"59.90"}`)},
		{ID: "order-2", Type: "order.created"},
		{ID: "order-3", ClientID: "shop-3", Type: "order.paid"},
	} {
		if err := ix.Add(ctx, e, report); err != nil {
			log.Fatal(err)
		}
	}
	if err := ix.Close(ctx); err != nil { // sends what is queued and waits for every outcome
		log.Fatal(err)
	}
	slices.Sort(lines)
	fmt.Println(strings.Join(lines, "\n"))
	s := ix.Stats()
	fmt.Printf("stored %d, failed %d\n", s.Stored, s.Failed)
	// Output:
	// refused order-2: clientId: required (400 invalid_request)
	// stored order-1
	// stored order-3
	// stored 2, failed 1
}

// Post sends one request and fills in the events' missing ids and timestamps first, so the
// same slice can be sent again: the second time, every event is found already stored.
func ExampleClient_Post() {
	url, stop := fakeSpillway()
	defer stop()
	c, _ := client.New(client.Options{IngestURL: url, SearchURL: url, Ack: client.AckSearchable})

	events := []client.Event{{ClientID: "sensor-17", Type: "temperature", Payload: json.RawMessage(`{"celsius":21.5}`)}}
	for range 2 {
		res, err := c.Post(context.Background(), events)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("accepted %d, duplicates %d, same id: %v\n", res.Accepted, res.Duplicates, res.IDs[0] == events[0].ID)
	}
	// Output:
	// accepted 1, duplicates 0, same id: true
	// accepted 1, duplicates 1, same id: true
}

// Events iterates over every page; Count agrees with it.
func ExampleClient_Events() {
	url, stop := fakeSpillway()
	defer stop()
	c, _ := client.New(client.Options{IngestURL: url, SearchURL: url})
	ctx := context.Background()
	var events []client.Event
	for i := range 5 {
		events = append(events, client.Event{ID: fmt.Sprintf("login-%d", i), ClientID: "client-1",
			Timestamp: time.Date(2026, 3, 9, 12, 0, i, 0, time.UTC)})
	}
	if _, err := c.Post(ctx, events); err != nil {
		log.Fatal(err)
	}

	q := client.Query{ClientIDs: []string{"client-1"}, Desc: true, Limit: 2} // pages of 2
	for e, err := range c.Events(ctx, q) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(e.ID, e.Timestamp.Format(time.TimeOnly))
	}
	n, err := c.Count(ctx, q)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("count:", n)
	// Output:
	// login-4 12:00:04
	// login-3 12:00:03
	// login-2 12:00:02
	// login-1 12:00:01
	// login-0 12:00:00
	// count: 5
}

func ExampleClient_Get() {
	url, stop := fakeSpillway()
	defer stop()
	c, _ := client.New(client.Options{IngestURL: url, SearchURL: url})
	ctx := context.Background()
	if _, err := c.Post(ctx, []client.Event{{ID: "order-1", ClientID: "shop-3", Payload: json.RawMessage(`{"total":"59.90"}`)}}); err != nil {
		log.Fatal(err)
	}

	e, err := c.Get(ctx, "order-1")
	fmt.Println(e.ClientID, string(e.Payload), err)
	_, err = c.Get(ctx, "order-2")
	fmt.Println(errors.Is(err, client.ErrNotFound))
	// Output:
	// shop-3 {"total":"59.90"} <nil>
	// true
}

// Stream follows new events live and resumes by itself after a disconnect. Keep the last
// LastEventID to resume after a restart of the reader too.
func ExampleClient_Stream() {
	c, err := client.New(client.Options{APIKey: "spw_..."}) // the services on their default ports
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := context.WithTimeout(context.Background(), time.Minute)
	defer stop()
	last := "" // or the token saved by the previous run
	for ev, err := range c.Stream(ctx, client.Query{ClientIDs: []string{"client-1"}}, last) {
		if err != nil {
			log.Print(err) // ctx ended, or the server refused the stream
			break
		}
		fmt.Println(ev.Event.ID, ev.Event.Type)
		last = ev.LastEventID
	}
}

// fakeSpillway serves a small in-memory imitation of the ingest and search APIs: enough for
// the examples to run without the real services. It stores events by id (a second post of an
// id is a duplicate), refuses events without a clientId as ingest does (nothing of the request
// stored), and pages by offset.
func fakeSpillway() (url string, stop func()) {
	var mu sync.Mutex
	byID := map[string]client.Event{}
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("POST /api/v1/events", func(w http.ResponseWriter, r *http.Request) {
		var batch []client.Event
		var details []client.FieldError
		sc := bufio.NewScanner(r.Body)
		for i := 0; sc.Scan(); i++ {
			var e client.Event
			_ = json.Unmarshal(sc.Bytes(), &e)
			if e.ClientID == "" {
				details = append(details, client.FieldError{Index: i, Field: "clientId", Message: "required"})
			}
			batch = append(batch, e)
		}
		if details != nil {
			reply(w, 400, map[string]any{"error": map[string]any{"code": "invalid_request", "message": "invalid events; nothing was stored", "details": details}})
			return
		}
		mu.Lock()
		defer mu.Unlock()
		res := client.Result{Accepted: len(batch)}
		for _, e := range batch {
			if _, ok := byID[e.ID]; ok {
				res.Duplicates++
			}
			byID[e.ID] = e
			res.IDs = append(res.IDs, e.ID)
		}
		reply(w, 201, res)
	})
	matching := func(r *http.Request) []client.Event {
		mu.Lock()
		defer mu.Unlock()
		var out []client.Event
		for _, e := range byID {
			if slices.Contains(r.URL.Query()["clientId"], e.ClientID) {
				out = append(out, e)
			}
		}
		slices.SortFunc(out, func(a, b client.Event) int { return cmp.Or(a.Timestamp.Compare(b.Timestamp), cmp.Compare(a.ID, b.ID)) })
		if r.URL.Query().Get("order") == "desc" {
			slices.Reverse(out)
		}
		return out
	}
	mux.HandleFunc("GET /api/v1/events", func(w http.ResponseWriter, r *http.Request) {
		events := matching(r)
		from, _ := strconv.Atoi(r.URL.Query().Get("cursor"))
		limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
		if err != nil {
			limit = 100
		}
		page := map[string]any{"events": events[from:min(from+limit, len(events))]}
		if from+limit < len(events) {
			page["nextCursor"] = strconv.Itoa(from + limit)
		}
		reply(w, 200, page)
	})
	mux.HandleFunc("GET /api/v1/events/count", func(w http.ResponseWriter, r *http.Request) {
		reply(w, 200, map[string]int{"count": len(matching(r))})
	})
	mux.HandleFunc("GET /api/v1/events/{id}", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		e, ok := byID[r.PathValue("id")]
		mu.Unlock()
		if !ok {
			reply(w, 404, map[string]any{"error": map[string]any{"code": "not_found", "message": "no event with this id"}})
			return
		}
		reply(w, 200, e)
	})
	srv := httptest.NewServer(mux)
	return srv.URL, srv.Close
}
