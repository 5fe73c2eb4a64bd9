package apitest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestCheck: the answers the document describes pass; each way an answer can break it fails,
// with a message that says how.
func TestCheck(t *testing.T) {
	json := http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"r-1"}}
	with := func(h http.Header, kv ...string) http.Header {
		h = h.Clone()
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				h.Del(kv[i])
			} else {
				h.Set(kv[i], kv[i+1])
			}
		}
		return h
	}
	const event = `{"id":"e1","clientId":"c","timestamp":"2026-01-02T03:04:05.000000Z","ingestedAt":"2026-01-02T03:04:05.000001Z"}`
	tests := []struct {
		name, service, method, target string
		status                        int
		header                        http.Header
		body                          string
		want                          string // "" passes; else a substring of the error
	}{
		{"201", Ingest, "POST", "/api/v1/events", 201, json, `{"accepted":1,"duplicates":0,"ids":["e1"]}`, ""},
		{"page", Search, "GET", "/api/v1/events?clientId=c", 200, json, `{"events":[` + event + `],"nextCursor":"x"}`, ""},
		{"by id", Search, "GET", "/api/v1/events/e1", 200, json, event, ""},
		{"count", Search, "GET", "/api/v1/events/count?clientId=c", 200, json, `{"count":0}`, ""},
		{"parameter problem without index", Search, "GET", "/api/v1/events?clientId=c", 400, json,
			`{"error":{"code":"invalid_request","message":"m","details":[{"field":"to","message":"m"}]}}`, ""},
		{"429 with Retry-After", Search, "GET", "/api/v1/events/count?clientId=c", 429, with(json, "Retry-After", "1"),
			`{"error":{"code":"rate_limited","message":"m"}}`, ""},
		{"stream", Search, "GET", "/api/v1/events/stream?clientId=c", 200, with(json, "Content-Type", "text/event-stream"), "retry: 1000\n", ""},
		{"health from either", Ingest, "HEAD", "/healthz", 200, json, "", ""},
		{"document", Search, "GET", "/openapi.yaml", 200, with(json, "Content-Type", "application/yaml; charset=utf-8", "ETag", `"x"`),
			"openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths: {}\n", ""},
		{"unknown path", Ingest, "GET", "/nope", 404, json, `{"error":{"code":"not_found","message":"m"}}`, ""},
		{"the other service's method", Search, "POST", "/api/v1/events", 405, with(json, "Allow", "GET"),
			`{"error":{"code":"method_not_allowed","message":"m"}}`, ""},
		{"Go's own 431", Ingest, "GET", "/healthz", 431, http.Header{"Content-Type": {"text/plain; charset=utf-8"}}, "431 Request Header Fields Too Large", ""},

		{"index -1", Search, "GET", "/api/v1/events?clientId=c", 400, json,
			`{"error":{"code":"invalid_request","message":"m","details":[{"index":-1,"field":"to","message":"m"}]}}`, "minimum"},
		{"no X-Request-Id", Search, "GET", "/api/v1/events/count?clientId=c", 200, with(json, "X-Request-Id", ""), `{"count":0}`, "X-Request-Id"},
		{"X-Request-Id not plain", Ingest, "GET", "/nope", 404, with(json, "X-Request-Id", "a b"), `{"error":{"code":"not_found","message":"m"}}`, "X-Request-Id"},
		{"undocumented status", Search, "GET", "/api/v1/events/e1", 409, json, `{"error":{"code":"c","message":"m"}}`, "not documented"},
		{"body off schema", Search, "GET", "/api/v1/events/count?clientId=c", 200, json, `{"count":-1}`, "count"},
		{"missing field", Ingest, "POST", "/api/v1/events", 201, json, `{"accepted":1,"ids":["e1"]}`, "duplicates"},
		{"429 without Retry-After", Search, "GET", "/api/v1/events/count?clientId=c", 429, json, `{"error":{"code":"c","message":"m"}}`, "Retry-After"},
		{"undocumented content type", Search, "GET", "/api/v1/events/e1", 200, with(json, "Content-Type", "text/html"), event, "text/html"},
		{"405 without Allow", Search, "TRACE", "/api/v1/events/e1", 405, json, `{"error":{"code":"method_not_allowed","message":"m"}}`, "Allow"},
		{"405 for an unknown path", Search, "GET", "/nope", 405, with(json, "Allow", "GET"), `{"error":{"code":"c","message":"m"}}`, "not 404 or 405"},
		{"the other service's operation answered", Search, "POST", "/api/v1/events", 201, json, `{"accepted":1,"duplicates":0,"ids":["e1"]}`, "not 404 or 405"},
		{"404 not in the envelope", Ingest, "GET", "/nope", 404, with(json, "Content-Type", "text/plain; charset=utf-8"), "404 page not found", "envelope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.service, httptest.NewRequest(tc.method, tc.target, nil), tc.status, tc.header, []byte(tc.body))
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("unexpected failure: %v", err)
			case tc.want != "" && err == nil:
				t.Errorf("passed, want a failure about %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Errorf("failure %q does not mention %q", err, tc.want)
			}
		})
	}
}

// TestHandlerAndTransport: both adapters see the response as the client gets it, streams too,
// and hand it on unchanged.
func TestHandlerAndTransport(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/events/count", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", "r-1")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"count":3}`))
	})
	mux.HandleFunc("GET /api/v1/events/stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Request-Id", "r-2")
		w.Header().Set("Content-Type", "text/event-stream")
		w.(http.Flusher).Flush()
		_, _ = w.Write([]byte("retry: 1000\n\n"))
	})
	srv := httptest.NewServer(Handler(t, Search, mux))
	t.Cleanup(srv.Close)
	client := &http.Client{Transport: Transport(t, Search, nil)}
	for path, want := range map[string]string{"/api/v1/events/count?clientId=c": `{"count":3}`, "/api/v1/events/stream?clientId=c": "retry: 1000\n\n"} {
		res, err := client.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		_, _ = io.Copy(&b, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || b.String() != want {
			t.Errorf("GET %s: %d %q, want 200 %q", path, res.StatusCode, b.String(), want)
		}
	}
}
