package esstore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/event"
)

// pageResponse is a search response as Elasticsearch answers the benchmark's S5 query: 101
// events of 5 KB, with their sort values.
func pageResponse(tb testing.TB) []byte {
	var hits []map[string]any
	filler := strings.Repeat("abcdefghij", 497)
	now := time.Now()
	for i := 0; i < 101; i++ {
		ts := now.Add(-time.Duration(i) * time.Millisecond)
		e := event.Event{ID: fmt.Sprintf("lg-run-%d", i), ClientID: "client-7", Type: "load", Timestamp: ts, IngestedAt: ts,
			Payload: json.RawMessage(fmt.Sprintf(`{"seq":%d,"data":"%s"}`, i, filler))}
		doc, err := esstore.EncodeDoc(e)
		if err != nil {
			tb.Fatal(err)
		}
		hits = append(hits, map[string]any{"_index": "events-2026.03.09", "_id": e.ID, "_score": nil,
			"_source": json.RawMessage(doc), "sort": []any{ts.UnixNano(), e.ID}})
	}
	b, err := json.Marshal(map[string]any{"took": 3, "timed_out": false,
		"_shards": map[string]int{"total": 1, "successful": 1, "skipped": 0, "failed": 0},
		"hits":    map[string]any{"max_score": nil, "hits": hits}})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// BenchmarkPageDecode measures what search spends on one page of 100 events of 5 KB besides
// Elasticsearch: the request and the decoding of the response (a canned one, over loopback).
//
//	go test -run XXX -bench BenchmarkPageDecode ./pkg/esstore/
func BenchmarkPageDecode(b *testing.B) {
	body := pageResponse(b)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	s, err := esstore.New(config.Elasticsearch{URLs: []string{srv.URL}, IndexPrefix: "events", RequestTimeout: 10 * time.Second}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		hits, err := s.Page(ctx, event.PageQuery{Filter: event.Filter{ClientIDs: []string{"client-7"}}, Desc: true, Size: 101})
		if err != nil || len(hits) != 101 || !bytes.HasPrefix(hits[100].Payload, []byte(`{"seq":100,`)) {
			b.Fatalf("%d hits, %v", len(hits), err)
		}
	}
}
