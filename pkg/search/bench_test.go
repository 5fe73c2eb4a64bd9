package search_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/search"
)

// BenchmarkPage measures GET /api/v1/events for a random client's 100 newest events, end to end
// over HTTP on loopback, and reports p50/p99. By default it indexes a small data set into a
// prefix of its own; for a figure on a large index, load one once and reuse it:
//
//	SPILLWAY_BENCH_PREFIX=benchsearch SPILLWAY_BENCH_EVENTS=3000000 \
//	  go test -run XXX -bench BenchmarkPage -benchtime 2000x ./pkg/search/
//
// loads 3,000,000 small events of 10,000 clients over three days into benchsearch-* (only when
// that prefix holds no events yet) and keeps them for later runs; delete them afterwards with
// curl -XDELETE 'localhost:9200/benchsearch-*' and the template benchsearch-template.
func BenchmarkPage(b *testing.B) {
	clients := 10000
	prefix := os.Getenv("SPILLWAY_BENCH_PREFIX")
	var env *esEnv
	if prefix == "" {
		clients = 200 // 100 events each
		env = newESEnv(b, 1)
		loadBench(b, env, 20000, clients)
	} else {
		cfg := testenv.DefaultES(testenv.ESURL())
		cfg.IndexPrefix = prefix
		env = openESEnv(b, cfg)
		n, _ := strconv.Atoi(os.Getenv("SPILLWAY_BENCH_EVENTS"))
		if have := env.count(b); have == 0 && n > 0 {
			loadBench(b, env, n, clients)
		}
	}
	b.Logf("index holds %d events", env.count(b))

	srv := startServer(b, env.store, env.store, testConfig())
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	r := rand.New(rand.NewPCG(1, 2))
	for _, order := range []string{"desc", "asc"} {
		b.Run(order, func(b *testing.B) {
			b.ReportAllocs()
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				u := fmt.Sprintf("%s/api/v1/events?clientId=c%04d&limit=100&order=%s", srv.URL, r.IntN(clients), order)
				start := time.Now()
				res, err := client.Get(u)
				if err != nil {
					b.Fatal(err)
				}
				var body listBody
				err = json.NewDecoder(res.Body).Decode(&body)
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				lat = append(lat, time.Since(start))
				if err != nil || res.StatusCode != 200 || len(body.Events) == 0 {
					b.Fatalf("status %d, %d events, %v", res.StatusCode, len(body.Events), err)
				}
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

// openESEnv is newESEnv for a named prefix that outlives the run.
func openESEnv(b *testing.B, cfg config.Elasticsearch) *esEnv {
	cfg.RefreshInterval = 30 * time.Second // bulk loading: refreshed once at the end
	return newESEnvWith(b, cfg)
}

// count returns the number of documents in the prefix's indices.
func (e *esEnv) count(tb testing.TB) int64 {
	res, err := http.Get(e.cfg.URLs[0] + "/" + e.store.Pattern() + "/_count?allow_no_indices=true")
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	var out struct{ Count int64 }
	_ = json.NewDecoder(res.Body).Decode(&out)
	return out.Count
}

// loadBench indexes n small events of the given number of clients, spread over three days,
// with two bulk requests of 10,000 events in flight (the machine is shared: no more).
func loadBench(tb testing.TB, env *esEnv, n, clients int) {
	start := time.Now()
	end := time.Now().Truncate(time.Hour)
	span := int64(72 * time.Hour)
	batches := make(chan []event.Event, 2)
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for batch := range batches {
				if err := env.tryBulk(bulkBody(env, batch), "false"); err != nil {
					tb.Error(err)
				}
			}
		}()
	}
	r := rand.New(rand.NewPCG(5, 6))
	types := []string{"click", "view", "buy", "login", "logout"}
	for done := 0; done < n; {
		batch := make([]event.Event, 0, 10000)
		for ; len(batch) < cap(batch) && done < n; done++ {
			ts := end.Add(-time.Duration(r.Int64N(span)))
			batch = append(batch, event.Event{ID: event.NewID(), ClientID: fmt.Sprintf("c%04d", r.IntN(clients)), Type: types[r.IntN(len(types))],
				Timestamp: ts, IngestedAt: ts.Add(time.Duration(r.IntN(1000)) * time.Millisecond), Payload: json.RawMessage(`{"n":` + strconv.Itoa(done) + `}`)})
		}
		batches <- batch
		if done%500000 == 0 {
			tb.Logf("loaded %d events in %s", done, time.Since(start).Round(time.Second))
		}
	}
	close(batches)
	wg.Wait()
	if err := env.store.Refresh(testenv.Context(tb, 10*time.Minute)); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("loaded %d events in %s", n, time.Since(start).Round(time.Second))
}

// pageStore answers every page with the same hits: what BenchmarkListHandler encodes.
type pageStore struct{ hits []event.Event }

func (p pageStore) Page(context.Context, event.PageQuery) ([]event.Event, error) {
	return p.hits, nil
}
func (p pageStore) Count(context.Context, event.Filter) (int64, error) { return 0, nil }
func (p pageStore) Get(context.Context, string, time.Time) (event.Event, error) {
	return event.Event{}, event.ErrNotFound
}

// BenchmarkListHandler measures what search spends answering "latest 100 events of a client"
// once the store has returned them: 101 events of 5 KB (S5's page), encoded as the API's JSON.
//
//	go test -run XXX -bench BenchmarkListHandler ./pkg/search/
func BenchmarkListHandler(b *testing.B) {
	filler := strings.Repeat("abcdefghij", 497)
	now := time.Now().UTC()
	var hits []event.Event
	for i := 0; i < 101; i++ {
		ts := now.Add(-time.Duration(i) * time.Millisecond)
		e := event.Event{ID: fmt.Sprintf("lg-run-%d", i), ClientID: "client-7", Type: "load", Timestamp: ts, IngestedAt: ts,
			Payload: json.RawMessage(fmt.Sprintf(`{"seq":%d,"data":"%s"}`, i, filler))}
		hits = append(hits, e)
	}
	svc := search.New(pageStore{hits: hits}, nil, testConfig(), nil, prometheus.NewRegistry())
	r := mux.NewRouter()
	svc.Mount(r)
	req := httptest.NewRequest(http.MethodGet, "/api/v1/events?clientId=client-7&order=desc&limit=100", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		if w.Code != 200 || w.Body.Len() < 500_000 {
			b.Fatalf("%d, %d bytes", w.Code, w.Body.Len())
		}
	}
}
