package ingest

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillway/spillway/api/apitest"
	"github.com/spillway/spillway/pkg/auth"
	"github.com/spillway/spillway/pkg/httpx"
	"github.com/spillway/spillway/pkg/ratelimit"
)

// authRig serves the handler behind auth.Require, as cmd/ingest wires it.
func authRig(t *testing.T, keys string, lim *ratelimit.Limiter) *rig {
	t.Helper()
	a, err := auth.New(auth.Options{Keys: keys, Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	w := &fakeWriter{}
	mon := NewMonitor(prometheus.NewRegistry(), cfg.RetryAfter, nil)
	opts := Options{Writer: w, Monitor: mon}
	if lim != nil {
		opts.Limiter = lim
	}
	h := New(cfg, opts)
	r := httpx.NewRouter()
	httpx.Use(r, httpx.WithRequestID)
	api := r.NewRoute().Subrouter()
	api.Use(auth.Require(a, auth.RoleIngest, func(w http.ResponseWriter, r *http.Request, err error) { httpx.WriteError(w, r, nil, err) }))
	h.Mount(api)
	srv := httptest.NewServer(apitest.Handler(t, apitest.Ingest, r))
	t.Cleanup(srv.Close)
	return &rig{h: h, w: w, mon: mon, srv: srv}
}

func events(clients ...string) []byte {
	var b strings.Builder
	for i, c := range clients {
		fmt.Fprintf(&b, `{"id":"e%d","clientId":%q}`+"\n", i, c)
	}
	return []byte(b.String())
}

func TestBoundKeyCannotPostForOtherClients(t *testing.T) {
	bound, admin, reader := auth.NewKey(), auth.NewKey(), auth.NewKey()
	rg := authRig(t, "mobile:ingest:"+auth.Hash(bound)+":c1,c2;ops:admin:"+auth.Hash(admin)+";dash:read:"+auth.Hash(reader), nil)
	bearer := func(k string) []string { return []string{"Authorization", "Bearer " + k} }

	tests := []struct {
		name    string
		hdr     []string
		clients []string
		status  int
		code    string
		detail  int // index of the first offending event, -1 for none
	}{
		{"own clients", bearer(bound), []string{"c1", "c2", "c1"}, 201, "", -1},
		{"one foreign event refuses all", bearer(bound), []string{"c1", "c2", "c3", "c1"}, 403, "forbidden", 2},
		{"x-api-key header", []string{"X-API-Key", bound}, []string{"c9"}, 403, "forbidden", 0},
		{"admin acts for anyone", bearer(admin), []string{"c9", "c1"}, 201, "", -1},
		{"read key may not ingest", bearer(reader), []string{"c1"}, 403, "forbidden", -1},
		{"no key", nil, []string{"c1"}, 401, "unauthenticated", -1},
		{"unknown key", bearer(auth.NewKey()), []string{"c1"}, 401, "unauthenticated", -1},
		{"basic auth is not a key", []string{"Authorization", "Basic " + bound}, []string{"c1"}, 401, "unauthenticated", -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := rg.w.callCount()
			res := rg.post(t, "", ndjsonCT, events(tc.clients...), tc.hdr...)
			if res.status != tc.status {
				t.Fatalf("status %d, want %d: %s", res.status, tc.status, res.body)
			}
			wrote := rg.w.callCount() - before
			if tc.status != 201 {
				if wrote != 0 {
					t.Fatalf("refused request reached the writer")
				}
				env := res.envelope(t)
				if env.Code != tc.code {
					t.Fatalf("code %q, want %q", env.Code, tc.code)
				}
				if tc.status == 401 && res.header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
				if tc.detail >= 0 {
					if len(env.Details) == 0 || env.Details[0].Index != tc.detail || env.Details[0].Field != "clientId" ||
						!strings.Contains(env.Details[0].Message, tc.clients[tc.detail]) || !strings.Contains(env.Message, "nothing was stored") {
						t.Fatalf("403 does not name the event and clientId: %s", res.body)
					}
				}
				for _, h := range tc.hdr {
					if strings.HasPrefix(h, "spw_") && bytes.Contains(res.body, []byte(h)) {
						t.Fatal("the response echoes the key")
					}
				}
				return
			}
			if wrote != 1 {
				t.Fatalf("writer calls %d", wrote)
			}
		})
	}
}

func TestRateLimitPerKey(t *testing.T) {
	noisy, polite := auth.NewKey(), auth.NewKey()
	lim := ratelimit.New(0.01, 10, 0) // 10 events at once, then one per 100 s: no refill during the test
	rg := authRig(t, "noisy:ingest:"+auth.Hash(noisy)+";polite:ingest:"+auth.Hash(polite), lim)

	if res := rg.post(t, "", ndjsonCT, events("a", "a", "a", "a", "a", "a", "a", "a"), "X-API-Key", noisy); res.status != 201 {
		t.Fatalf("within the burst: %d %s", res.status, res.body)
	}
	// 3 more do not fit: refused whole, charged nothing, with Retry-After.
	res := rg.post(t, "", ndjsonCT, events("a", "b", "c"), "X-API-Key", noisy)
	if res.status != http.StatusTooManyRequests || res.envelope(t).Code != "rate_limited" || res.header.Get("Retry-After") == "" {
		t.Fatalf("over the rate: %d %v %s", res.status, res.header, res.body)
	}
	if !strings.Contains(res.envelope(t).Message, `"noisy"`) {
		t.Errorf("429 does not name the key: %s", res.body)
	}
	// The 2 left still fit: the refusal took nothing.
	if res := rg.post(t, "", ndjsonCT, events("a", "b"), "X-API-Key", noisy); res.status != 201 {
		t.Fatalf("refused request was charged: %d %s", res.status, res.body)
	}
	// Empty bucket: refused before the body is read.
	if res := rg.post(t, "", ndjsonCT, []byte("not even json"), "X-API-Key", noisy); res.status != http.StatusTooManyRequests {
		t.Fatalf("empty bucket: %d %s", res.status, res.body)
	}
	// Another key is unaffected.
	if res := rg.post(t, "", ndjsonCT, events("a", "a", "a", "a", "a", "a", "a", "a", "a", "a"), "X-API-Key", polite); res.status != 201 {
		t.Fatalf("polite key throttled: %d %s", res.status, res.body)
	}
	if n := rg.w.callCount(); n != 3 {
		t.Fatalf("writer calls %d, want 3", n)
	}
}

func TestRateLimitPerClientWithoutKeys(t *testing.T) {
	lim := ratelimit.New(0.01, 10, 0)
	rg := authRig(t, "", lim) // open mode: the principal is auth.Anonymous
	if res := rg.post(t, "", ndjsonCT, events("a", "a", "a", "a", "a", "a", "a", "a", "a", "a")); res.status != 201 {
		t.Fatalf("within the burst: %d %s", res.status, res.body)
	}
	res := rg.post(t, "", ndjsonCT, events("b", "a"))
	if res.status != http.StatusTooManyRequests {
		t.Fatalf("client a over its rate: %d %s", res.status, res.body)
	}
	if ra := res.header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After %q", ra)
	}
	// b was not charged for the refused request: its whole burst is left.
	if res := rg.post(t, "", ndjsonCT, events("b", "b", "b", "b", "b", "b", "b", "b", "b", "b")); res.status != 201 {
		t.Fatalf("client b throttled by client a: %d %s", res.status, res.body)
	}
}
