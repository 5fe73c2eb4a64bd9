package httpx

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Unknown paths and methods answer in the envelope and, through Use, carry X-Request-Id and are
// counted like routed requests; a 405 lists the path's methods in Allow, also for routes behind
// a subrouter (where the services keep their API routes).
func TestUnroutedAnswers(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry(), "test")
	r := NewRouter()
	api := r.NewRoute().Subrouter()
	api.Use(func(next http.Handler) http.Handler { return next })
	noop := func(http.ResponseWriter, *http.Request) {}
	api.HandleFunc("/api/v1/events", noop).Methods(http.MethodGet, http.MethodPost)
	api.HandleFunc("/api/v1/events/{id}", noop).Methods(http.MethodGet)
	MountHealth(r, NewHealth(time.Second))
	Use(r, WithRequestID, m.Middleware)

	tests := []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{"TRACE", "/api/v1/events/0", 405, "method_not_allowed", "GET"},
		{"DELETE", "/api/v1/events", 405, "method_not_allowed", "GET, POST"},
		{"POST", "/healthz", 405, "method_not_allowed", "GET, HEAD"},
		{"FOO", "/healthz", 405, "method_not_allowed", "GET, HEAD"},
		{"GET", "/nope", 404, "not_found", ""},
		{"GET", "/api/v1/events/a/b", 404, "not_found", ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(tc.method, tc.path, nil)
			req.Header.Set(RequestIDHeader, "trace-me")
			r.ServeHTTP(rec, req)
			var env Envelope
			if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil || rec.Code != tc.status || env.Error.Code != tc.code {
				t.Fatalf("%d %s, want %d %s", rec.Code, rec.Body, tc.status, tc.code)
			}
			if got := rec.Header().Get("Allow"); got != tc.allow {
				t.Errorf("Allow %q, want %q", got, tc.allow)
			}
			if got := rec.Header().Get(RequestIDHeader); got != "trace-me" {
				t.Errorf("X-Request-Id %q, want the request's", got)
			}
		})
	}
	// Counted, and a client's method names no series of its own: TRACE and FOO are "other".
	for _, c := range []struct {
		route, method, status string
		want                  float64
	}{
		{"unmatched", "GET", "404", 2},
		{"unmatched", "POST", "405", 1},
		{"unmatched", "DELETE", "405", 1},
		{"unmatched", "other", "405", 2},
	} {
		if got := testutil.ToFloat64(m.requests.WithLabelValues(c.route, c.method, c.status)); got != c.want {
			t.Errorf("requests{route=%q,method=%q,status=%q} = %v, want %v", c.route, c.method, c.status, got, c.want)
		}
	}
}
