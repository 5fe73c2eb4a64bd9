package httpx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/spillway/spillway/pkg/event"
)

type retryErr struct{}

func (retryErr) Error() string             { return "busy" }
func (retryErr) Is(t error) bool           { return t == event.ErrOverloaded }
func (retryErr) RetryAfter() time.Duration { return 3 * time.Second }

func TestWriteErrorMapsSentinels(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		status     int
		code       string
		retryAfter string
		details    int
	}{
		{"validation", fmt.Errorf("decode: %w", &event.ValidationError{Details: []event.FieldError{{Index: 2, Field: "clientId", Message: "required"}}}), 400, "invalid_request", "", 1},
		{"not found", fmt.Errorf("get: %w", event.ErrNotFound), 404, "not_found", "", 0},
		{"too large", event.ErrTooLarge, 413, "too_large", "", 0},
		{"media", event.ErrUnsupportedMedia, 415, "unsupported_media_type", "", 0},
		{"overloaded with hint", retryErr{}, 429, "overloaded", "3", 0},
		{"unavailable", fmt.Errorf("bulk: %w", event.ErrUnavailable), 503, "unavailable", "1", 0},
		{"unauthenticated", event.ErrUnauthenticated, 401, "unauthenticated", "", 0},
		{"forbidden", event.ErrForbidden, 403, "forbidden", "", 0},
		{"explicit", &Error{Status: 400, Code: "bad_param", Message: "limit: must be 1..1000"}, 400, "bad_param", "", 0},
		{"unknown is 500 without leaking", errors.New("pq: secret internals"), 500, "internal", "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			WriteError(rec, httptest.NewRequest("GET", "/x", nil), nil, tc.err)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d", rec.Code, tc.status)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("content type %q", ct)
			}
			if got := rec.Header().Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tc.retryAfter)
			}
			var env Envelope
			if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil {
				t.Fatalf("body %s: %v", rec.Body, err)
			}
			if env.Error.Code != tc.code || env.Error.Message == "" || len(env.Error.Details) != tc.details {
				t.Errorf("envelope %+v", env)
			}
			if tc.status == 500 && env.Error.Message != "internal error" {
				t.Errorf("500 leaks: %q", env.Error.Message)
			}
		})
	}
}

func TestReadyzFailsWhenDrainingOrCheckFails(t *testing.T) {
	h := NewHealth(time.Second)
	fail := false
	h.AddCheck("store", func(context.Context) error {
		if fail {
			return errors.New("down")
		}
		return nil
	})
	get := func() int {
		rec := httptest.NewRecorder()
		h.Readyz(rec, httptest.NewRequest("GET", "/readyz", nil))
		return rec.Code
	}
	if get() != 200 {
		t.Fatal("not ready with passing checks")
	}
	fail = true
	if get() != 503 {
		t.Fatal("ready with a failing check")
	}
	fail = false
	h.SetDraining()
	if get() != 503 {
		t.Fatal("ready while draining")
	}
	rec := httptest.NewRecorder()
	RejectWhenDraining(h)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(201) })).
		ServeHTTP(rec, httptest.NewRequest("POST", "/api/v1/events", nil))
	if rec.Code != 503 || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("draining API request: %d", rec.Code)
	}
}

func TestRequestIDKeptOrGenerated(t *testing.T) {
	var seen string
	h := WithRequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = RequestID(r.Context()) }))
	for in, keep := range map[string]bool{"abc-123": true, "": false, "bad id\n": false, string(make([]byte, 200)): false} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set(RequestIDHeader, in)
		h.ServeHTTP(rec, req)
		if keep && seen != in || !keep && (seen == in || seen == "") || rec.Header().Get(RequestIDHeader) != seen {
			t.Errorf("in %q: seen %q header %q", in, seen, rec.Header().Get(RequestIDHeader))
		}
	}
}
