package bench_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/bench"
	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/pgstore"
)

// TestNaiveHandlerInsertsEachEvent: the naive design writes each event with its own INSERT
// into its plain table (created in its schema), not into Spillway's archive.
func TestNaiveHandlerInsertsEachEvent(t *testing.T) {
	cfg := testenv.PG(t)
	ctx := testenv.Context(t, time.Minute)
	db := testenv.DB(t, cfg)
	exec := func(ctx context.Context, sql string, args ...any) (int64, error) {
		tag, err := db.Exec(ctx, sql, args...)
		return tag.RowsAffected(), err
	}
	table, err := bench.OpenNaiveTable(ctx, exec, cfg.Schema)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bench.OpenNaiveTable(ctx, exec, cfg.Schema); err != nil { // idempotent
		t.Fatal(err)
	}
	srv := httptest.NewServer(bench.NaiveHandler(table, 5*time.Second))
	defer srv.Close()
	for _, tc := range []struct {
		body   string
		status int
	}{
		{`{"id":"n1","clientId":"c1","type":"t","payload":{"a":1}}`, 201},
		{`{"id":"n1","clientId":"c1","type":"t","payload":{"a":1}}`, 201}, // a retry
		{`{"clientId":"c1"}`, 201},
		{`{"id":"n2"}`, 400},
		{`not json`, 400},
	} {
		res, err := http.Post(srv.URL+"/api/v1/events", "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.status {
			t.Errorf("%s: %d, want %d", tc.body, res.StatusCode, tc.status)
		}
	}
	var client, typ, payload string
	if err := db.QueryRow(ctx, `SELECT client_id, type, payload::text FROM naive_events WHERE id = 'n1'`).Scan(&client, &typ, &payload); err != nil {
		t.Fatal(err)
	}
	var total int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM naive_events`).Scan(&total); err != nil || total != 2 || client != "c1" || typ != "t" || payload != `{"a": 1}` {
		t.Fatalf("%d rows (%v); n1: %s %s %s", total, err, client, typ, payload)
	}
	var archive bool
	if err := db.QueryRow(ctx, `SELECT to_regclass('events') IS NOT NULL`).Scan(&archive); err != nil || archive {
		t.Fatalf("Spillway's events table exists in the naive schema (%v)", err)
	}
}

func TestRawBulkWritesTemplatedDocuments(t *testing.T) {
	cfg := testenv.ES(t)
	ctx := testenv.Context(t, time.Minute)
	s, err := esstore.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.InstallTemplate(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := bench.RawBulk(context.Background(), bench.RawBulkConfig{ESURL: cfg.URLs[0], IndexPrefix: cfg.IndexPrefix,
		Duration: 300 * time.Millisecond, BulkSize: 50, Concurrency: 2, EventSize: 512, Clients: 5})
	if err != nil {
		t.Fatal(err)
	}
	// Every document passed the strict mapping (no failed items) and is really there.
	if res.Docs == 0 || res.FailedItems != 0 || res.FailedRequests != 0 {
		t.Fatalf("%+v", res)
	}
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, cfg.URLs[0]+"/"+cfg.IndexPrefix+"/_count", nil)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var out struct {
		Count int64 `json:"count"`
	}
	if err := json.NewDecoder(r.Body).Decode(&out); err != nil || out.Count != res.Docs {
		t.Fatalf("count %d, raw bulk reported %d (%v)", out.Count, res.Docs, err)
	}
}

func TestRawBulkLoadsExactlyCount(t *testing.T) {
	cfg := testenv.ES(t)
	ctx := testenv.Context(t, time.Minute)
	s, err := esstore.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.InstallTemplate(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := bench.RawBulk(ctx, bench.RawBulkConfig{ESURL: cfg.URLs[0], IndexPrefix: cfg.IndexPrefix,
		Duration: time.Minute, Count: 1234, BulkSize: 100, Concurrency: 3, EventSize: 300, Clients: 5})
	if err != nil || res.Docs != 1234 {
		t.Fatalf("%+v %v", res, err)
	}
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := http.Get(cfg.URLs[0] + "/" + cfg.IndexPrefix + "/_count")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var out struct {
		Count int64 `json:"count"`
	}
	if err := json.NewDecoder(r.Body).Decode(&out); err != nil || out.Count != 1234 {
		t.Fatalf("count %d (%v)", out.Count, err)
	}
}

func TestRawCopyWritesRows(t *testing.T) {
	cfg := testenv.PG(t)
	ctx := testenv.Context(t, time.Minute)
	db := testenv.Archive(t, cfg, pgstore.Options{})
	res, err := bench.RawCopy(ctx, testenv.DB(t, cfg), db, 2500, 1000, 512, 7)
	if err != nil || res.Rows != 2500 || res.Batch != 1000 {
		t.Fatalf("%+v %v", res, err)
	}
	var n, clients int
	var size float64
	if err := testenv.DB(t, cfg).QueryRow(ctx, `SELECT count(*), count(DISTINCT client_id), avg(length(payload::text)) FROM events`).Scan(&n, &clients, &size); err != nil {
		t.Fatal(err)
	}
	if n != 2500 || clients > 7 || size < 300 || size > 512 {
		t.Fatalf("%d rows, %d clients, %.0f payload bytes", n, clients, size)
	}
}

// Grow spreads its rows over the days asked, one partition per day, before yesterday.
func TestGrowSpreadsRowsOverDays(t *testing.T) {
	ctx := testenv.Context(t, time.Minute)
	cfg := testenv.PG(t)
	db := testenv.Archive(t, cfg, pgstore.Options{})
	res, err := bench.Grow(ctx, testenv.DB(t, cfg), db, 3000, 30, 512, 10)
	if err != nil || res.Rows != 3000 || res.Bytes <= 0 {
		t.Fatalf("grow: %+v %v", res, err)
	}
	parts, err := db.Partitions(ctx)
	if err != nil || len(parts) != 30 {
		t.Fatalf("%d partitions, want 30 (%v)", len(parts), err)
	}
	yesterday := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -1)
	if last := parts[len(parts)-1].Day; !last.Before(yesterday) {
		t.Fatalf("the newest grown day %s is not before yesterday", last)
	}
}
