package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/api/apitest"
	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/event"
)

// TestRunServesAndShutsDownWithAnOpenStream runs the binary's run function against the real
// Elasticsearch: the API answers, metrics are exposed, and SIGTERM (ctx) ends an open stream so
// the graceful shutdown completes instead of waiting out the grace period for a reader that
// never hangs up (it would then fail with a shutdown deadline error).
func TestRunServesAndShutsDownWithAnOpenStream(t *testing.T) {
	es := testenv.ES(t)
	ctx := testenv.Context(t, 2*time.Minute)
	store, err := esstore.New(es, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.InstallTemplate(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, err := testenv.Put(ctx, store, event.Event{ID: "before", ClientID: "c", Timestamp: now, IngestedAt: now.Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg := testenv.LoadConfig(t, config.RoleSearch,
		"--http.addr", addr, "--elasticsearch.urls", es.URLs[0], "--elasticsearch.index_prefix", es.IndexPrefix,
		"--search.cursor_key", "a-test-key-of-enough-bytes", "--search.stream_poll", "50ms", "--http.shutdown_grace", "20s")
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- run(runCtx, cfg, nil, slog.New(slog.DiscardHandler)) }()

	base := "http://" + addr
	client := &http.Client{Transport: apitest.Transport(t, apitest.Search, nil)} // checks answers against api/openapi.yaml
	for i := 0; ; i++ {
		res, err := http.Get(base + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		if i > 200 {
			t.Fatalf("not ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	var page struct {
		Events []struct{ ID string } `json:"events"`
	}
	res, err := client.Get(base + "/api/v1/events?clientId=c")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.NewDecoder(res.Body).Decode(&page); err != nil || res.StatusCode != 200 || len(page.Events) != 1 || page.Events[0].ID != "before" {
		t.Fatalf("page: %d %+v %v", res.StatusCode, page, err)
	}
	res.Body.Close()

	stream, err := client.Get(base + "/api/v1/events/stream?clientId=c")
	if err != nil || stream.StatusCode != 200 {
		t.Fatalf("stream: %v %v", stream, err)
	}
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stream.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := func(prefix string) string {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("stream ended while waiting for %q", prefix)
				}
				if strings.HasPrefix(l, prefix) {
					return l
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("no %q line", prefix)
			}
		}
	}
	next("id: ")
	if _, err := testenv.Put(ctx, store, event.Event{ID: "after", ClientID: "c", Timestamp: time.Now(), IngestedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if l := next("data: "); !strings.Contains(l, `"id":"after"`) {
		t.Fatalf("stream delivered %s", l)
	}

	metrics, err := client.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(metrics.Body)
	metrics.Body.Close()
	for _, want := range []string{
		`spillway_search_open_streams 1`,
		`spillway_search_es_query_duration_seconds_count{op="page",outcome="ok"} 1`,
		`spillway_search_es_query_duration_seconds_count{op="read_shard",outcome="ok"}`,
		`spillway_search_stream_events_total 1`,
		`spillway_http_requests_total{method="GET",route="/api/v1/events",service="search",status="200"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	stop() // SIGTERM
	for range lines {
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("run did not return")
	}
}
