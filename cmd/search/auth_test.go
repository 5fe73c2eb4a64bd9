package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
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
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/event"
)

// load builds the search configuration from flags, with no environment, and a cursor key.
func load(t *testing.T, args ...string) *config.Config {
	t.Helper()
	return testenv.LoadConfig(t, config.RoleSearch, append(args, "--search.cursor_key", "a-test-key-of-enough-bytes")...)
}

// serveBuilt runs build()'s service, mounted as app.Serve mounts it, with its stream poller,
// on an httptest server; logs go to the returned buffer at debug level.
func serveBuilt(t *testing.T, cfg *config.Config) (string, *testenv.SyncBuffer) {
	t.Helper()
	logs := &testenv.SyncBuffer{}
	service, svc, err := build(cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	service.Mount()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); svc.Run(ctx) }()
	srv := httptest.NewServer(apitest.Handler(t, apitest.Search, service.Router))
	t.Cleanup(func() { cancel(); <-done; srv.Close() })
	return srv.URL, logs
}

func get(t *testing.T, client *http.Client, url, key string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, string(b)
}

func TestSecureByDefault(t *testing.T) {
	cfg := load(t, "--elasticsearch.urls", "http://127.0.0.1:1")
	_, _, err := build(cfg, slog.New(slog.DiscardHandler))
	var ue *app.UsageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "auth.insecure_no_auth") {
		t.Fatalf("default config (http.addr %q, no keys): err %v, want a usage error", cfg.HTTP.Addr, err)
	}
	var logs bytes.Buffer
	cfg = load(t, "--http.addr", "[::1]:0", "--elasticsearch.urls", "http://127.0.0.1:1")
	if _, _, err := build(cfg, slog.New(slog.NewJSONHandler(&logs, nil))); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "WITHOUT authentication, on loopback only") {
		t.Fatalf("no warning about running open: %s", logs.String())
	}
}

// TestAuthOverHTTP: a read key bound to c1 reads c1 only, against the real Elasticsearch; another
// client's event by id is a 404 exactly like a missing id; no key reaches the logs.
func TestAuthOverHTTP(t *testing.T) {
	es := testenv.ES(t)
	ctx := testenv.Context(t, time.Minute)
	store, err := esstore.New(es, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.InstallTemplate(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, e := range []event.Event{{ID: "mine", ClientID: "c1"}, {ID: "theirs", ClientID: "c2"}} {
		e.Timestamp, e.IngestedAt = now, now
		if _, err := testenv.Put(ctx, store, e); err != nil {
			t.Fatal(err)
		}
	}
	bound, admin, ingestKey, stranger := auth.NewKey(), auth.NewKey(), auth.NewKey(), auth.NewKey()
	cfg := load(t, "--http.addr", "0.0.0.0:0", "--elasticsearch.urls", es.URLs[0], "--elasticsearch.index_prefix", es.IndexPrefix,
		"--auth.keys", "dash:read:"+auth.Hash(bound)+":c1;ops:admin:"+auth.Hash(admin)+";app:ingest:"+auth.Hash(ingestKey))
	url, logs := serveBuilt(t, cfg)

	c := http.DefaultClient
	missingStatus, _, missingBody := get(t, c, url+"/api/v1/events/no-such-id", bound)
	for _, tc := range []struct {
		name, path, key string
		status          int
		want            string
	}{
		{"own page", "/api/v1/events?clientId=c1", bound, 200, `"id":"mine"`},
		{"own count", "/api/v1/events/count?clientId=c1", bound, 200, `{"count":1}`},
		{"other's page", "/api/v1/events?clientId=c2", bound, 403, `may not act for clientId \"c2\"`},
		{"own and other's count", "/api/v1/events/count?clientId=c1&clientId=c2", bound, 403, `clientId \"c2\"`},
		{"other's stream", "/api/v1/events/stream?clientId=c2", bound, 403, `clientId \"c2\"`},
		{"own event", "/api/v1/events/mine", bound, 200, `"clientId":"c1"`},
		{"admin reads anyone", "/api/v1/events/theirs", admin, 200, `"clientId":"c2"`},
		{"ingest key cannot read", "/api/v1/events?clientId=c1", ingestKey, 403, `"code":"forbidden"`},
		{"unknown key", "/api/v1/events?clientId=c1", stranger, 401, `"code":"unauthenticated"`},
		{"healthz open", "/healthz", "", 200, `"ok"`},
		{"metrics need admin", "/metrics", bound, 403, `"code":"forbidden"`},
		{"metrics for admin", "/metrics", admin, 200, `spillway_http_requests_total`},
	} {
		status, _, body := get(t, c, url+tc.path, tc.key)
		if status != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s, want %d with %s", tc.name, status, body, tc.status, tc.want)
		}
	}
	// Another client's event is indistinguishable from a missing one.
	status, _, body := get(t, c, url+"/api/v1/events/theirs", bound)
	if status != 404 || missingStatus != 404 || strings.ReplaceAll(body, "theirs", "x") != strings.ReplaceAll(missingBody, "no-such-id", "x") {
		t.Errorf("other's event: %d %s; missing event: %d %s", status, body, missingStatus, missingBody)
	}
	l := logs.String()
	if !strings.Contains(l, "API keys loaded") {
		t.Fatalf("unexpected log: %s", l)
	}
	for _, k := range []string{bound, admin, ingestKey, stranger} {
		if strings.Contains(l, k) || strings.Contains(l, k[4:20]) {
			t.Error("a key appears in the logs")
		}
	}
}

// TestRateLimitFloodingClientIsThrottled: per key, and without keys per client address (the
// polite client connects from 127.0.0.2), the flooder gets 429 + Retry-After while every polite
// request is answered. Latencies are logged, not asserted.
func TestRateLimitFloodingClientIsThrottled(t *testing.T) {
	es := testenv.ES(t)
	ctx := testenv.Context(t, time.Minute)
	store, err := esstore.New(es, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.InstallTemplate(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := testenv.Put(ctx, store, event.Event{ID: "e", ClientID: "c", Timestamp: time.Now(), IngestedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	from2 := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext}}
	flood, polite := auth.NewKey(), auth.NewKey()
	for _, mode := range []string{"per key", "per address without keys"} {
		t.Run(mode, func(t *testing.T) {
			args := []string{"--http.addr", "127.0.0.1:0", "--elasticsearch.urls", es.URLs[0], "--elasticsearch.index_prefix", es.IndexPrefix,
				"--ratelimit.search_requests_per_second", "20", "--ratelimit.search_burst", "20"}
			floodKey, politeKey, politeClient := "", "", from2
			if mode == "per key" {
				args = append(args, "--auth.keys", "flood:read:"+auth.Hash(flood)+";polite:read:"+auth.Hash(polite))
				floodKey, politeKey, politeClient = flood, polite, http.DefaultClient
			}
			url, _ := serveBuilt(t, load(t, args...))
			var (
				mu                            sync.Mutex
				flood200, flood429, polite200 int
				floodLat, politeLat           []time.Duration
				wg                            sync.WaitGroup
			)
			stop := make(chan struct{})
			for g := 0; g < 2; g++ { // two flooders saturate a 2-core machine
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						start := time.Now()
						status, hdr, body := get(t, http.DefaultClient, url+"/api/v1/events/count?clientId=c", floodKey)
						mu.Lock()
						floodLat = append(floodLat, time.Since(start))
						switch {
						case status == 200:
							flood200++
						case status == 429 && hdr.Get("Retry-After") != "" && strings.Contains(body, `"code":"rate_limited"`):
							flood429++
						case status == 503: // Elasticsearch slower than search.query_timeout on a loaded machine: not the limiter's doing
						default:
							t.Errorf("flood: %d %v %s", status, hdr, body)
						}
						mu.Unlock()
					}
				}()
			}
			tick := time.NewTicker(100 * time.Millisecond) // 10 requests/s: half the limit
			for i := 0; i < 30; i++ {
				<-tick.C
				start := time.Now()
				status, _, body := get(t, politeClient, url+"/api/v1/events?clientId=c", politeKey)
				politeLat = append(politeLat, time.Since(start))
				if status != 200 {
					t.Errorf("polite request %d: %d %s", i, status, body)
					continue
				}
				mu.Lock()
				polite200++
				mu.Unlock()
			}
			tick.Stop()
			close(stop)
			wg.Wait()
			if flood429 == 0 || flood200 == 0 {
				t.Fatalf("flood: %d×200, %d×429; want both", flood200, flood429)
			}
			t.Logf("%s: flood %d×200 %d×429 (p50 %v, p99 %v); polite %d×200 (p50 %v, p99 %v)", mode, flood200, flood429,
				pct(floodLat, 50), pct(floodLat, 99), polite200, pct(politeLat, 50), pct(politeLat, 99))
		})
	}
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, len(s)*p/100)].Round(100 * time.Microsecond)
}
