package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/api/apitest"
	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/pgstore"
)

// TestColdTierWiring builds the binary's service with search.cold_tier: one API over an event
// only Elasticsearch has and one only PostgreSQL has (below the boundary), its read-only pool
// capped as configured, and Drain closing it.
func TestColdTierWiring(t *testing.T) {
	es, pgCfg := testenv.ES(t), testenv.PG(t)
	ctx := testenv.Context(t, 2*time.Minute)
	store, err := esstore.New(es, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.InstallTemplate(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	b := now.Add(-40 * 24 * time.Hour).Truncate(24 * time.Hour)
	hot := event.Event{ID: "hot", ClientID: "c", Timestamp: now.Add(-time.Hour), IngestedAt: now, Payload: json.RawMessage(`{"a":1}`)}
	cold := event.Event{ID: "cold", ClientID: "c", Timestamp: b.Add(-time.Hour), IngestedAt: now, Payload: json.RawMessage(`{"b":[1,2]}`)}
	if _, err := testenv.Put(ctx, store, hot); err != nil {
		t.Fatal(err)
	}
	pg := testenv.Archive(t, pgCfg, pgstore.Options{})
	if _, err := pg.InsertEvent(ctx, cold); err != nil {
		t.Fatal(err)
	}
	if _, err := pg.AdvanceColdBoundary(ctx, es.IndexPrefix, b); err != nil {
		t.Fatal(err)
	}

	cfg := load(t, "--elasticsearch.urls", es.URLs[0], "--elasticsearch.index_prefix", es.IndexPrefix,
		"--postgres.url", pgCfg.URL.Value(), "--postgres.schema", pgCfg.Schema,
		"--search.cold_tier", "true", "--search.cold_boundary_refresh", "20ms", "--search.postgres_max_conns", "1",
		"--http.addr", "127.0.0.1:0")
	svc, _, err := build(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	svc.Mount()
	srv := httptest.NewServer(apitest.Handler(t, apitest.Search, svc.Router))
	defer srv.Close()
	get := func(path string) (int, string) {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(body)
	}
	// The boundary is read in the background; until then the old range answers 503.
	deadline := time.Now().Add(30 * time.Second)
	var code int
	var body string
	for code != 200 && time.Now().Before(deadline) {
		code, body = get("/api/v1/events?clientId=c")
		time.Sleep(20 * time.Millisecond)
	}
	var page struct {
		Events []struct {
			ID      string          `json:"id"`
			Payload json.RawMessage `json:"payload"`
		} `json:"events"`
	}
	if err := json.Unmarshal([]byte(body), &page); err != nil || code != 200 || len(page.Events) != 2 ||
		page.Events[0].ID != "cold" || page.Events[1].ID != "hot" || string(page.Events[0].Payload) != `{"b":[1,2]}` {
		t.Fatalf("page: %d %s", code, body)
	}
	if code, body := get("/api/v1/events/cold"); code != 200 || !strings.Contains(body, `"id":"cold"`) {
		t.Fatalf("get cold: %d %s", code, body)
	}
	if code, body := get("/api/v1/events/count?clientId=c"); code != 200 || body != `{"count":2}`+"\n" {
		t.Fatalf("count: %d %q", code, body)
	}
	_, metrics := get("/metrics")
	for _, want := range []string{`spillway_search_tier_queries_total{op="page",outcome="ok",tier="cold"}`, `spillway_search_tier_boundary_stale 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// search.postgres_max_conns holds: at most one connection for search.
	var n int
	if err := testenv.DB(t, pgCfg).QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'spillway-search'`).Scan(&n); err != nil || n > 1 {
		t.Fatalf("search holds %d connections (%v), cap 1", n, err)
	}
	if err := svc.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	// A closed connection's backend leaves pg_stat_activity once it has exited, a moment after
	// the client hung up: wait for that (the bound only guards against a hang), then require 0.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		err = testenv.DB(t, pgCfg).QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'spillway-search'`).Scan(&n)
		if err != nil || n == 0 || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || n != 0 {
		t.Fatalf("after drain search still holds %d connections (%v)", n, err)
	}
}
