package tier_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/httpx"
	"github.com/spillway/spillway/pkg/pgstore"
	"github.com/spillway/spillway/pkg/search"
	"github.com/spillway/spillway/pkg/tier"
)

// BenchmarkPageByTier measures GET /api/v1/events for 100 events of a random client from a range
// entirely below the cold boundary (PostgreSQL) and entirely above it (Elasticsearch), end to end
// over HTTP on loopback through the search handler and the tier store, and reports p50/p99.
//
// The data: SPILLWAY_BENCH_EVENTS events (default 20,000) of one client per 500 events, spread over 60
// days; the boundary 30 days back. PostgreSQL holds all of them (as after archiving), Elasticsearch
// the 30 newer days (as after retention). The machine is shared: read the figures as rough.
//
//	SPILLWAY_BENCH_EVENTS=200000 go test -run '^$' -bench PageByTier -benchtime 2000x ./pkg/tier/
func BenchmarkPageByTier(b *testing.B) {
	n := 20000
	if v, err := strconv.Atoi(os.Getenv("SPILLWAY_BENCH_EVENTS")); err == nil && v > 0 {
		n = v
	}
	clients := max(n/500, 1) // about 250 events per client in each tier
	ctx := testenv.Context(b, 30*time.Minute)
	now := time.Now().UTC()
	boundary := now.Add(-30 * day).Truncate(day)
	esCfg, pgCfg := testenv.ES(b), testenv.PG(b)
	esCfg.RefreshInterval = 30 * time.Second // loading: refreshed once at the end
	es, err := esstore.New(esCfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := es.InstallTemplate(ctx); err != nil {
		b.Fatal(err)
	}
	pg := testenv.Archive(b, pgCfg, pgstore.Options{})

	r := rand.New(rand.NewPCG(9, 10))
	start := time.Now()
	var hot []event.Event
	rows := make([]event.Event, 0, 10000)
	flush := func() {
		if _, err := pg.CopyEvents(ctx, pgstore.OriginBackfill, rows); err != nil {
			b.Fatal(err)
		}
		rows = rows[:0]
	}
	for i := 0; i < n; i++ {
		ts := now.Add(-time.Duration(r.Int64N(int64(60 * day)))).Truncate(time.Microsecond)
		e := event.Event{ID: event.NewID(), ClientID: fmt.Sprintf("c%03d", r.IntN(clients)), Type: "click", Timestamp: ts, IngestedAt: ts,
			Payload: json.RawMessage(`{"n":` + strconv.Itoa(i) + `,"page":"/checkout","ok":true}`)}
		rows = append(rows, event.Event{ID: e.ID, ClientID: e.ClientID, Type: e.Type, Timestamp: ts, IngestedAt: ts, Payload: e.Payload})
		if len(rows) == cap(rows) {
			flush()
		}
		if !ts.Before(boundary) {
			hot = append(hot, e)
		}
	}
	flush()
	if _, err := testenv.DB(b, pgCfg).Exec(ctx, "ANALYZE events"); err != nil {
		b.Fatal(err)
	}
	precreate(b, esCfg.URLs[0], es, hot)
	for i := 0; i < len(hot); i += 5000 {
		var body bytes.Buffer
		enc := json.NewEncoder(&body)
		for _, e := range hot[i:min(i+5000, len(hot))] {
			_ = enc.Encode(map[string]any{"create": map[string]any{"_index": es.IndexFor(e.Timestamp), "_id": e.ID}})
			doc, _ := esstore.EncodeDoc(e)
			body.Write(append(doc, '\n'))
		}
		res, err := http.Post(esCfg.URLs[0]+"/_bulk?filter_path=errors", "application/x-ndjson", &body)
		if err != nil {
			b.Fatal(err)
		}
		out, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !bytes.Contains(out, []byte(`"errors":false`)) {
			b.Fatalf("bulk: %d %s", res.StatusCode, out)
		}
	}
	if err := es.Refresh(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := pg.AdvanceColdBoundary(ctx, es.Prefix(), boundary); err != nil {
		b.Fatal(err)
	}
	b.Logf("loaded %d events (%d in Elasticsearch, all in PostgreSQL) in %s", n, len(hot), time.Since(start).Round(time.Second))

	searchPG, err := pgstore.Open(ctx, pgCfg, pgstore.Options{MaxConns: 2, ReadOnly: true}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(searchPG.Close)
	ts := tier.New(es, searchPG, tier.Options{Prefix: es.Prefix(), Refresh: time.Second, MaxAge: time.Hour, HotHorizon: 29 * day})
	if err := ts.Refresh(ctx); err != nil {
		b.Fatal(err)
	}
	cfg := config.Search{DefaultLimit: 100, MaxLimit: 1000, MaxClientIDs: 100, MaxStreams: 10, StreamPoll: time.Second,
		StreamHeartbeat: 15 * time.Second, QueryTimeout: 10 * time.Second, CursorKey: "bench-cursor-key-0123456789abcdef"}
	svc := search.New(ts, es, cfg, nil, prometheus.NewRegistry())
	router := httpx.NewRouter()
	svc.Mount(router)
	server := httptest.NewServer(router)
	b.Cleanup(server.Close)
	srv := server.URL
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}

	for _, tc := range []struct {
		name     string
		from, to time.Time
		desc     bool
	}{
		{"cold/asc", time.Time{}, boundary, false},
		{"cold/desc", time.Time{}, boundary, true},
		{"hot/asc", boundary, time.Time{}, false},
		{"hot/desc", boundary, time.Time{}, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			lat := make([]time.Duration, 0, b.N)
			for b.Loop() {
				q := url.Values{"clientId": {fmt.Sprintf("c%03d", r.IntN(clients))}, "limit": {"100"}}
				if !tc.from.IsZero() {
					q.Set("from", tc.from.Format(time.RFC3339))
				}
				if !tc.to.IsZero() {
					q.Set("to", tc.to.Format(time.RFC3339))
				}
				if tc.desc {
					q.Set("order", "desc")
				}
				t0 := time.Now()
				res, err := client.Get(srv + "/api/v1/events?" + q.Encode())
				if err != nil {
					b.Fatal(err)
				}
				var body struct{ Events []json.RawMessage }
				err = json.NewDecoder(res.Body).Decode(&body)
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				lat = append(lat, time.Since(t0))
				if err != nil || res.StatusCode != 200 || len(body.Events) != 100 {
					b.Fatalf("status %d, %d events, %v", res.StatusCode, len(body.Events), err)
				}
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
