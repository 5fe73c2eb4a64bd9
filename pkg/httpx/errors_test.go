package httpx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/spillway/spillway/api"
	"github.com/spillway/spillway/api/apitest"
	"github.com/spillway/spillway/pkg/event"
)

// op is a request of one operation in api/openapi.yaml, as the service that serves it gets it.
type op struct{ service, method, target string }

// The operations of api/openapi.yaml that answer errors, and two requests for no operation.
var (
	postEvents   = op{apitest.Ingest, "POST", "/api/v1/events"}
	listEvents   = op{apitest.Search, "GET", "/api/v1/events?clientId=c"}
	countEvents  = op{apitest.Search, "GET", "/api/v1/events/count?clientId=c"}
	streamEvents = op{apitest.Search, "GET", "/api/v1/events/stream?clientId=c"}
	getEvent     = op{apitest.Search, "GET", "/api/v1/events/e1"}
	ingestMetric = op{apitest.Ingest, "GET", "/metrics"}
	searchMetric = op{apitest.Search, "GET", "/metrics"}
	unknownPath  = op{apitest.Search, "GET", "/nope"}
	otherMethod  = op{apitest.Search, "POST", "/api/v1/events"}

	apiOps  = []op{postEvents, listEvents, countEvents, streamEvents, getEvent}
	keyOps  = append(slices.Clone(apiOps), ingestMetric, searchMetric) // where a key is checked
	readOps = []op{postEvents, listEvents, countEvents, getEvent}      // ingest's write, search's queries
)

// TestOutcomes is the one table of outcomes: for every sentinel and typed error of package event
// (and the router's 405) the status, code, message and Retry-After the mapper gives, and, for
// every operation that can answer it, that api/openapi.yaml documents that answer — status,
// required headers and body, as apitest.Check reads the document. An outcome without operations
// reaches no client.
func TestOutcomes(t *testing.T) {
	details := []event.FieldError{{Index: 2, Field: "clientId", Message: "required"}}
	tests := []struct {
		name       string
		err        error
		kind       error // the outcome: a sentinel of package event, or errMethodNotAllowed
		status     int
		code       string
		message    string
		retryAfter string
		details    int
		ops        []op
	}{
		{"invalid: a validation error", fmt.Errorf("decode: %w", &event.ValidationError{Details: details}),
			event.ErrInvalid, 400, "invalid_request", "decode: clientId: required", "", 1, apiOps},
		{"invalid: a wrapped sentinel", fmt.Errorf("page query: %w: clientIds are required", event.ErrInvalid),
			event.ErrInvalid, 400, "invalid_request", "page query: invalid: clientIds are required", "", 0, apiOps},
		{"invalid: typed", &event.Error{Kind: event.ErrInvalid, Message: "could not read the request body: unexpected EOF", Err: io.ErrUnexpectedEOF},
			event.ErrInvalid, 400, "invalid_request", "could not read the request body: unexpected EOF", "", 0, []op{postEvents}},
		{"rejected", &event.Error{Kind: event.ErrRejected, Message: "Elasticsearch rejected 1 of 3 events", Details: details},
			event.ErrRejected, 400, "rejected", "Elasticsearch rejected 1 of 3 events", "", 1, []op{postEvents}},
		{"unauthenticated", &event.Error{Kind: event.ErrUnauthenticated, Message: "invalid API key"},
			event.ErrUnauthenticated, 401, "unauthenticated", "invalid API key", "", 0, keyOps},
		{"forbidden, with details", &event.Error{Kind: event.ErrForbidden, Message: `API key "k" may not post events for clientId "c"`, Details: details},
			event.ErrForbidden, 403, "forbidden", `API key "k" may not post events for clientId "c"`, "", 1, keyOps},
		{"not found", &event.Error{Kind: event.ErrNotFound, Message: "no event with this id"},
			event.ErrNotFound, 404, "not_found", "no event with this id", "", 0, []op{getEvent, unknownPath}},
		{"not found: a store's", fmt.Errorf("event %q: %w", "e1", event.ErrNotFound),
			event.ErrNotFound, 404, "not_found", `event "e1": not found`, "", 0, []op{getEvent}},
		{"method not allowed", &event.Error{Kind: errMethodNotAllowed, Message: "method POST not allowed on /api/v1/events"},
			errMethodNotAllowed, 405, "method_not_allowed", "method POST not allowed on /api/v1/events", "", 0, []op{otherMethod}},
		{"request timeout", &event.Error{Kind: event.ErrRequestTimeout, Message: "the request body did not arrive within http.read_timeout", Err: os.ErrDeadlineExceeded},
			event.ErrRequestTimeout, 408, "request_timeout", "the request body did not arrive within http.read_timeout", "", 0, []op{postEvents}},
		{"too large", &event.Error{Kind: event.ErrTooLarge, Message: "request body over 10 bytes"},
			event.ErrTooLarge, 413, "too_large", "request body over 10 bytes", "", 0, []op{postEvents}},
		{"unsupported media", &event.Error{Kind: event.ErrUnsupportedMedia, Message: "charset must be utf-8"},
			event.ErrUnsupportedMedia, 415, "unsupported_media_type", "charset must be utf-8", "", 0, []op{postEvents}},
		{"rate limited, with its delay", &event.Error{Kind: event.ErrRateLimited, Message: "rate limit exceeded", RetryAfter: 2500 * time.Millisecond},
			event.ErrRateLimited, 429, "rate_limited", "rate limit exceeded", "3", 0, apiOps},
		{"overloaded, with its delay", &event.Error{Kind: event.ErrOverloaded, Message: "too many events in flight", RetryAfter: 2 * time.Second},
			event.ErrOverloaded, 429, "overloaded", "too many events in flight", "2", 0, []op{postEvents}},
		{"overloaded: a sentinel gets the default delay", event.ErrOverloaded,
			event.ErrOverloaded, 429, "overloaded", "overloaded", "1", 0, []op{postEvents}},
		{"unavailable", fmt.Errorf("bulk: %w", event.ErrUnavailable),
			event.ErrUnavailable, 503, "unavailable", "bulk: unavailable", "1", 0, apiOps},
		{"unavailable: typed, over a canceled cause", &event.Error{Kind: event.ErrUnavailable, Message: "not ready", Err: context.Canceled},
			event.ErrUnavailable, 503, "unavailable", "not ready", "1", 0, apiOps},
		{"deadline: typed", &event.Error{Kind: event.ErrDeadline, Message: "query took longer than search.query_timeout", Err: context.DeadlineExceeded},
			event.ErrDeadline, 503, "unavailable", "query took longer than search.query_timeout", "1", 0, readOps},
		{"deadline: a context's, in a store's unavailability", fmt.Errorf("search: %w: %w", event.ErrUnavailable, context.DeadlineExceeded),
			event.ErrDeadline, 503, "unavailable", "the request took longer than the server allows; retry later", "1", 0, readOps},
		{"canceled: the client went away, whatever failed then", fmt.Errorf("search: %w: %w", event.ErrUnavailable, context.Canceled),
			event.ErrCanceled, StatusClientClosedRequest, "canceled", "the client closed the request before its answer", "", 0, nil},
		{"canceled: typed", &event.Error{Kind: event.ErrCanceled, Message: "the client went away before the acknowledgement"},
			event.ErrCanceled, StatusClientClosedRequest, "canceled", "the client went away before the acknowledgement", "", 0, nil},
		{"unknown: 500 without leaking", errors.New("pq: secret internals"),
			nil, 500, "internal", "internal error", "", 0, nil},
	}
	covered := map[error]bool{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.kind != nil {
				covered[tc.kind] = true
				if !errors.Is(tc.err, tc.kind) {
					t.Fatalf("%v does not match %v", tc.err, tc.kind)
				}
			}
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
			if env.Error.Code != tc.code || env.Error.Message != tc.message || len(env.Error.Details) != tc.details {
				t.Errorf("envelope %+v, want code %q, message %q, %d details", env.Error, tc.code, tc.message, tc.details)
			}
			for _, o := range tc.ops {
				req := httptest.NewRequest(o.method, o.target, nil)
				h := rec.Header().Clone()
				h.Set(RequestIDHeader, "r-1") // WithRequestID's
				if tc.status == http.StatusUnauthorized {
					h.Set("WWW-Authenticate", `Bearer realm="spillway"`) // auth.Require's
				}
				if tc.status == http.StatusMethodNotAllowed {
					h.Set("Allow", "GET") // NewRouter's
				}
				if err := apitest.Check(o.service, req, rec.Code, h, rec.Body.Bytes()); err != nil {
					t.Errorf("%s %s: %v", o.method, o.target, err)
				}
			}
		})
	}
	for _, o := range outcomes {
		if !covered[o.kind] {
			t.Errorf("outcome %q (%d %s) has no row in this table", o.kind, o.status, o.code)
		}
	}
}

// Every code a client can read is named where api/openapi.yaml describes the error envelope.
func TestCodesDocumented(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas struct {
				Error struct {
					Properties struct {
						Error struct {
							Properties struct {
								Code struct {
									Description string `yaml:"description"`
								} `yaml:"code"`
							} `yaml:"properties"`
						} `yaml:"error"`
					} `yaml:"properties"`
				} `yaml:"Error"`
			} `yaml:"schemas"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(api.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	desc := doc.Components.Schemas.Error.Properties.Error.Properties.Code.Description
	if desc == "" {
		t.Fatal("no description of the error code in api/openapi.yaml")
	}
	named := map[string]bool{}
	for _, w := range strings.FieldsFunc(desc, func(r rune) bool { return r == ',' || r == ' ' || r == '.' }) {
		named[w] = true
	}
	codes := []string{"internal"} // the mapper's answer to what it does not know
	for _, o := range outcomes {
		if o.status != StatusClientClosedRequest { // no client reads it
			codes = append(codes, o.code)
		}
	}
	for _, c := range codes {
		if !named[c] {
			t.Errorf("code %q is not named in api/openapi.yaml (components/schemas/Error, code): %q", c, desc)
		}
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
