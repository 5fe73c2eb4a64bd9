package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spillway/spillway/api/apitest"
	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/app"
	"github.com/spillway/spillway/pkg/auth"
	"github.com/spillway/spillway/pkg/config"
)

// served is the wired ingest service on a test server, with its logs.
type served struct {
	url   string
	svc   *app.Service
	logs  *testenv.SyncBuffer
	admin *httptest.Server // the admin listener, when http.admin_addr is set
}

// serveWired runs wire()'s service, mounted exactly as app.Serve mounts it, on an httptest
// server, logging at debug level into a buffer; it waits until /readyz answers 200.
func serveWired(t *testing.T, cfg *config.Config) *served {
	t.Helper()
	logs := &testenv.SyncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := wire(ctx, cfg, logger)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &served{svc: svc, logs: logs}
	if admin := svc.Mount(); admin != nil {
		s.admin = httptest.NewServer(apitest.Handler(t, apitest.Ingest, admin))
	}
	srv := httptest.NewServer(apitest.Handler(t, apitest.Ingest, svc.Router))
	s.url = srv.URL
	t.Cleanup(func() {
		srv.Close()
		if s.admin != nil {
			s.admin.Close()
		}
		dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer dcancel()
		if err := svc.Drain(dctx); err != nil {
			t.Errorf("drain: %v", err)
		}
		cancel()
	})
	for i := 0; ; i++ {
		res, err := http.Get(s.url + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		if i > 600 {
			t.Fatalf("not ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

func (s *served) do(t *testing.T, method, path, key string, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/x-ndjson")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, string(b)
}

// countPrefix counts every event stored under the test's index prefix, after a refresh.
func countPrefix(t *testing.T, es config.Elasticsearch) int {
	t.Helper()
	return countQuery(t, es, map[string]any{"match_all": map[string]any{}})
}

func TestSecureByDefault(t *testing.T) {
	// wire refuses, as a usage error (exit 2), before contacting anything.
	cfg := testenv.LoadConfig(t, config.RoleIngest, "--elasticsearch.urls", "http://127.0.0.1:1")
	_, err := wire(context.Background(), cfg, slog.New(slog.DiscardHandler))
	var ue *app.UsageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "auth.insecure_no_auth") {
		t.Fatalf("default config (http.addr %q, no keys): err %v, want a usage error naming auth.insecure_no_auth", cfg.HTTP.Addr, err)
	}
	for _, tc := range []struct {
		name string
		args []string
		warn string
	}{
		{"loopback without keys", []string{"--http.addr", "127.0.0.1:0"}, "on loopback only"},
		{"public address with insecure_no_auth", []string{"--http.addr", ":0", "--auth.insecure_no_auth", "true"}, "auth.insecure_no_auth=true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cfg := testenv.LoadConfig(t, config.RoleIngest, append(tc.args, "--elasticsearch.urls", "http://127.0.0.1:1")...)
			if _, err := wire(ctx, cfg, slog.New(slog.NewJSONHandler(&logs, nil))); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(logs.String(), `"level":"WARN"`) || !strings.Contains(logs.String(), tc.warn) {
				t.Fatalf("no warning about running open: %s", logs.String())
			}
		})
	}

	// The binary itself: exit status 2 and the reason on stderr.
	cmd := exec.Command(testenv.Build(t, "cmd/ingest"))
	cmd.Env = []string{"SPILLWAY_HTTP_ADDR=0.0.0.0:" + fmt.Sprint(testenv.FreePort(t)), "SPILLWAY_ES_URL=http://127.0.0.1:1"}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != app.ExitUsage || !strings.Contains(string(out), "auth.insecure_no_auth") {
		t.Fatalf("binary on 0.0.0.0 without keys: %v, output %s", err, out)
	}
}

// TestAuthOverHTTP drives the wired service against the real Elasticsearch: who may post for
// which client, what stays open, and that no key ever reaches the logs.
func TestAuthOverHTTP(t *testing.T) {
	es := testenv.ES(t)
	bound, admin, reader, stranger := auth.NewKey(), auth.NewKey(), auth.NewKey(), auth.NewKey()
	keys := "mobile:ingest:" + auth.Hash(bound) + ":c1;ops:admin:" + auth.Hash(admin) + ";dash:read:" + auth.Hash(reader)
	cfg := testenv.LoadConfig(t, config.RoleIngest, "--http.addr", "0.0.0.0:0", "--auth.keys", keys,
		"--elasticsearch.urls", es.URLs[0], "--elasticsearch.index_prefix", es.IndexPrefix)
	s := serveWired(t, cfg)

	line := func(id, client string) string { return fmt.Sprintf(`{"id":%q,"clientId":%q}`+"\n", id, client) }
	steps := []struct {
		name, method, path, key, body string
		status                        int
		code                          string
	}{
		{"no key", "POST", "/api/v1/events", "", line("x1", "c1"), 401, "unauthenticated"},
		{"unknown key", "POST", "/api/v1/events", stranger, line("x2", "c1"), 401, "unauthenticated"},
		{"read key", "POST", "/api/v1/events", reader, line("x3", "c1"), 403, "forbidden"},
		{"bound key, one foreign event", "POST", "/api/v1/events?wait=searchable", bound, line("x4", "c1") + line("x5", "c2"), 403, "forbidden"},
		{"bound key, own client", "POST", "/api/v1/events?wait=searchable", bound, line("ok1", "c1"), 201, ""},
		{"admin key, any client", "POST", "/api/v1/events?wait=searchable", admin, line("ok2", "c2"), 201, ""},
		{"healthz is open", "GET", "/healthz", "", "", 200, ""},
		{"readyz is open", "GET", "/readyz", "", "", 200, ""},
		{"openapi is open", "GET", "/openapi.yaml", "", "", 200, ""},
		{"metrics need a key", "GET", "/metrics", "", "", 401, "unauthenticated"},
		{"metrics need admin", "GET", "/metrics", bound, "", 403, "forbidden"},
		{"metrics with admin", "GET", "/metrics", admin, "", 200, ""},
		{"unknown route", "GET", "/nope", "", "", 404, "not_found"},
		{"wrong method", "GET", "/api/v1/events", admin, "", 405, "method_not_allowed"},
	}
	for _, st := range steps {
		status, hdr, body := s.do(t, st.method, st.path, st.key, st.body)
		if status != st.status || st.code != "" && !strings.Contains(body, `"code":"`+st.code+`"`) {
			t.Errorf("%s: %d %s, want %d %s", st.name, status, body, st.status, st.code)
		}
		if status == 401 && hdr.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", st.name)
		}
	}
	if n := countPrefix(t, es); n != 2 {
		t.Fatalf("%d events stored, want the 2 accepted ones (nothing of a refused request)", n)
	}
	if got := countIDs(t, es, []string{"ok1", "ok2"}); got != 2 {
		t.Fatalf("accepted events stored: %d of 2", got)
	}

	// Keys never reach the logs: not the valid ones, not the one nobody knows.
	logs := s.logs.String()
	if !strings.Contains(logs, "API keys loaded") {
		t.Fatalf("the log is not what the test thinks it is: %s", logs)
	}
	for name, k := range map[string]string{"bound": bound, "admin": admin, "reader": reader, "stranger": stranger} {
		if strings.Contains(logs, k) || strings.Contains(logs, k[4:20]) {
			t.Errorf("the %s key appears in the logs", name)
		}
	}
}

// TestAdminListenerServesMetricsWithoutKey: with http.admin_addr, /metrics leaves the public
// listener and is served on the admin one without a key (which must therefore be private).
func TestAdminListenerServesMetricsWithoutKey(t *testing.T) {
	admin := auth.NewKey()
	cfg := testenv.LoadConfig(t, config.RoleIngest, "--http.addr", "0.0.0.0:0", "--http.admin_addr", "127.0.0.1:0", "--auth.keys", "ops:admin:"+auth.Hash(admin),
		"--elasticsearch.urls", testenv.ESURL(), "--elasticsearch.index_prefix", testenv.ES(t).IndexPrefix)
	s := serveWired(t, cfg)
	if status, _, _ := s.do(t, "GET", "/metrics", admin, ""); status != 404 {
		t.Errorf("public /metrics with admin_addr set: %d, want 404", status)
	}
	res, err := http.Get(s.admin.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("admin /metrics: %d", res.StatusCode)
	}
}

// TestRateLimitFloodingClientIsThrottled: one key floods, another posts politely; the flood is
// throttled with 429 + Retry-After while every polite request is served; nothing refused is
// stored and nothing acknowledged is lost. Latencies are logged, not asserted.
func TestRateLimitFloodingClientIsThrottled(t *testing.T) {
	for _, mode := range []string{"per key", "per clientId without keys"} {
		t.Run(mode, func(t *testing.T) {
			es := testenv.ES(t)
			flood, polite := auth.NewKey(), auth.NewKey()
			args := []string{"--http.addr", "127.0.0.1:0", "--ingest.max_events", "100",
				"--ratelimit.ingest_events_per_second", "300", "--ratelimit.ingest_burst", "300",
				"--elasticsearch.urls", es.URLs[0], "--elasticsearch.index_prefix", es.IndexPrefix}
			floodKey, politeKey := "", ""
			if mode == "per key" {
				args = append(args, "--auth.keys", "flood:ingest:"+auth.Hash(flood)+";polite:ingest:"+auth.Hash(polite))
				floodKey, politeKey = flood, polite
			}
			s := serveWired(t, testenv.LoadConfig(t, config.RoleIngest, args...))
			alone := runFlood(t, s, 0, floodKey, politeKey) // the polite client's latency without a flood, for the log
			res := runFlood(t, s, 2, floodKey, politeKey)
			if res.polite429 > 0 || res.politeOther > 0 {
				t.Fatalf("polite client refused: %d×429, %d other failures", res.polite429, res.politeOther)
			}
			// A flood request may also meet a 503 when the machine is so loaded that Elasticsearch
			// does not acknowledge within ingest.ack_timeout: that is not the limiter's doing.
			if res.flood429 == 0 || res.flood201 == 0 {
				t.Fatalf("flood: %d×201, %d×429, %d×503; want both 201s and 429s", res.flood201, res.flood429, res.flood503)
			}
			acked := append(res.acked, alone.acked...)
			if n := countQuery(t, es, map[string]any{"ids": map[string]any{"values": acked}}); n != len(acked) {
				t.Fatalf("%d of %d acknowledged events stored", n, len(acked))
			}
			// Nothing of a 429 is stored: beyond the acknowledged flood events, at most those of
			// 503 requests (whose fate the client does not know) can be there.
			stored := countQuery(t, es, map[string]any{"term": map[string]any{"clientId": "flood"}})
			if stored < 100*res.flood201 || stored > 100*(res.flood201+res.flood503) {
				t.Fatalf("%d flood events stored; %d requests acknowledged, %d refused with 429, %d answered 503", stored, res.flood201, res.flood429, res.flood503)
			}
			t.Logf("%s: flood %d×201 %d×429 %d×503 (p50 %v, p99 %v); polite %d×201 (p50 %v, p99 %v; alone p50 %v, p99 %v); %d acknowledged events stored, none refused",
				mode, res.flood201, res.flood429, res.flood503, pct(res.floodLat, 50), pct(res.floodLat, 99),
				res.polite201, pct(res.politeLat, 50), pct(res.politeLat, 99), pct(alone.politeLat, 50), pct(alone.politeLat, 99),
				len(acked))
		})
	}
}

type floodResult struct {
	flood201, flood429, flood503      int
	polite201, polite429, politeOther int
	floodLat, politeLat               []time.Duration
	acked                             []string // ids of events answered 201
}

// runFlood runs flooders flooding senders (100 events per request, as fast as they are
// answered: with 2 of them a 2-core machine is saturated) and one polite sender (10 events every 100 ms: 100/s, a third of the limit) until
// the polite one has made 30 requests.
func runFlood(t *testing.T, s *served, flooders int, floodKey, politeKey string) floodResult {
	var (
		mu  sync.Mutex
		res floodResult
		wg  sync.WaitGroup
	)
	stop := make(chan struct{})
	post := func(key, client string, n int, seq *int) (int, time.Duration, string, []string) {
		mu.Lock()
		*seq++
		prefix := fmt.Sprintf("%s-%d-%d", client, flooders, *seq) // unique across runs: no duplicates
		mu.Unlock()
		var b strings.Builder
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("%s-%d", prefix, i)
			fmt.Fprintf(&b, `{"id":%q,"clientId":%q}`+"\n", ids[i], client)
		}
		start := time.Now()
		status, hdr, body := s.do(t, "POST", "/api/v1/events", key, b.String())
		if status == 429 && hdr.Get("Retry-After") == "" {
			t.Errorf("429 without Retry-After: %s", body)
		}
		return status, time.Since(start), body, ids
	}
	var floodSeq, politeSeq int
	for g := 0; g < flooders; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				status, d, body, ids := post(floodKey, "flood", 100, &floodSeq)
				mu.Lock()
				res.floodLat = append(res.floodLat, d)
				switch status {
				case 201:
					res.flood201++
					res.acked = append(res.acked, ids...)
				case 429:
					res.flood429++
				case 503:
					res.flood503++
				default:
					t.Errorf("flood: %d %s", status, body)
				}
				mu.Unlock()
			}
		}()
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for i := 0; i < 30; i++ {
		<-tick.C
		status, d, body, ids := post(politeKey, "polite", 10, &politeSeq)
		mu.Lock()
		res.politeLat = append(res.politeLat, d)
		switch status {
		case 201:
			res.polite201++
			res.acked = append(res.acked, ids...)
		case 429:
			res.polite429++
		default:
			res.politeOther++
			t.Errorf("polite: %d %s", status, body)
		}
		mu.Unlock()
	}
	close(stop)
	wg.Wait()
	return res
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, len(s)*p/100)].Round(100 * time.Microsecond)
}

// countQuery counts the events under the test's prefix matching an Elasticsearch query, after
// a refresh.
func countQuery(t *testing.T, es config.Elasticsearch, query map[string]any) int {
	t.Helper()
	base := es.URLs[0] + "/" + es.IndexPrefix + "-*"
	res, err := http.Post(base+"/_refresh?allow_no_indices=true", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	q, _ := json.Marshal(map[string]any{"query": query})
	res, err = http.Post(base+"/_count?allow_no_indices=true", "application/json", bytes.NewReader(q))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out struct {
		Count int `json:"count"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || res.StatusCode != 200 {
		t.Fatalf("count: %d %v", res.StatusCode, err)
	}
	return out.Count
}
