// Package apitest checks HTTP responses against api/openapi.yaml, the contract of the ingest and
// search APIs: handler tests validate every response they provoke, status, headers and body, with
// kin-openapi. Check is the one check; Handler (for in-process servers) and Transport (for clients
// of a running binary) apply it to every response of a test.
//
// Beyond what kin-openapi checks against the operation (a documented status, its required headers,
// a documented content type, the body against its schema), Check holds every answer to what the
// document's description promises for all of them: an X-Request-Id of the documented pattern; for
// a path or method the service does not serve, a 404 or 405 in the error envelope, a 405 with
// Allow. The two plain-text answers Go's HTTP server gives before any handler (431, and 400 for a
// request that is not HTTP) are exempt, as the document says, and so is the 499 recorded for a
// client that went away before its answer.
//
// It is test support: the services do not import it (kin-openapi stays out of their binaries).
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/spillway/spillway/api"
)

// The services, as api/openapi.yaml names them in x-spillway-service.
const (
	Ingest = api.ServiceIngest
	Search = api.ServiceSearch
)

// clientClosedRequest is what the services record for a request whose client went away before
// its answer (httpx.StatusClientClosedRequest, nginx's 499): not an answer any client reads.
const clientClosedRequest = 499

// maxBody bounds what Handler and Transport keep of a body to validate; a longer body fails the
// check (no answer of the API is near it).
const maxBody = 64 << 20

var requestID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

var contract = sync.OnceValues(func() (*contractDoc, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.OpenAPI)
	if err != nil {
		return nil, fmt.Errorf("load api/openapi.yaml: %w", err)
	}
	if err := doc.Validate(context.Background(), openapi3.EnableExamplesValidation()); err != nil {
		return nil, fmt.Errorf("api/openapi.yaml is not valid OpenAPI: %w", err)
	}
	// Tests serve on random ports: route by path and method alone, not by the servers' URLs.
	doc.Servers = nil
	for _, item := range doc.Paths.Map() {
		item.Servers = nil
		for _, op := range item.Operations() {
			op.Servers = nil
		}
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route api/openapi.yaml: %w", err)
	}
	// A stream is validated as the text received so far: the document's schema is a string.
	openapi3filter.RegisterBodyDecoder("text/event-stream", func(r io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
		b, err := io.ReadAll(r)
		return string(b), err
	})
	return &contractDoc{doc: doc, router: router}, nil
})

type contractDoc struct {
	doc    *openapi3.T
	router routers.Router
}

// Check reports how one response of service (Ingest or Search) to req breaks api/openapi.yaml, or
// nil. Only req's method, URL and headers are read (not its body).
func Check(service string, req *http.Request, status int, header http.Header, body []byte) error {
	c, err := contract()
	if err != nil {
		return err
	}
	ct := header.Get("Content-Type")
	if status == http.StatusRequestHeaderFieldsTooLarge || status == http.StatusBadRequest && strings.HasPrefix(ct, "text/plain") {
		return nil // Go's HTTP server answered before any handler, as the document says
	}
	if status == clientClosedRequest {
		return nil // the client went away: recorded, read by no client, as the document says
	}
	if id := header.Get("X-Request-Id"); !requestID.MatchString(id) {
		return fmt.Errorf("%s %s: %d without a plain X-Request-Id (got %q); the document promises one on every response", req.Method, req.URL.Path, status, id)
	}
	route, params, err := c.router.FindRoute(req)
	switch {
	case err == nil && !slices.Contains(services(route.Operation), service):
		// The other service's operation: for this one, a known path with another method.
		return unrouted(c, req, status, header, body, true)
	case err != nil:
		return unrouted(c, req, status, header, body, errors.Is(err, routers.ErrMethodNotAllowed))
	}
	if _, ok := route.Operation.Responses.Map()[fmt.Sprint(status)]; !ok && status != http.StatusNotModified {
		return fmt.Errorf("%s %s (%s): status %d is not documented: %s", req.Method, req.URL.Path, route.Operation.OperationID, status, truncate(body))
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(req.Context(), in); err != nil {
		return fmt.Errorf("%s %s (%s): %d breaks api/openapi.yaml: %w\nbody: %s", req.Method, req.URL.Path, route.Operation.OperationID, status, err, truncate(body))
	}
	return nil
}

// unrouted checks the answer to a request for no operation of the service: a 404 for an
// unknown path, or a 405 with Allow for a known path (pathKnown) with a method the service does
// not serve; both in the error envelope.
func unrouted(c *contractDoc, req *http.Request, status int, header http.Header, body []byte, pathKnown bool) error {
	switch {
	case status == http.StatusNotFound:
	case status == http.StatusMethodNotAllowed && pathKnown:
		if header.Get("Allow") == "" {
			return fmt.Errorf("%s %s: 405 without Allow (RFC 9110)", req.Method, req.URL.Path)
		}
	default:
		return fmt.Errorf("%s %s is no operation of this service in api/openapi.yaml, but was answered %d, not 404 or 405: %s",
			req.Method, req.URL.Path, status, truncate(body))
	}
	if req.Method == http.MethodHead {
		return nil
	}
	if ct := header.Get("Content-Type"); ct != "application/json" {
		return fmt.Errorf("%s %s: %d with Content-Type %q, want the JSON error envelope", req.Method, req.URL.Path, status, ct)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("%s %s: %d body is not JSON: %v: %s", req.Method, req.URL.Path, status, err, truncate(body))
	}
	if err := c.doc.Components.Schemas["Error"].Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
		return fmt.Errorf("%s %s: %d body is not the error envelope: %v: %s", req.Method, req.URL.Path, status, err, truncate(body))
	}
	return nil
}

// services are the operation's x-spillway-service.
func services(op *openapi3.Operation) []string {
	switch v := op.Extensions["x-spillway-service"].(type) {
	case string:
		return []string{v}
	case []any:
		out := make([]string, 0, len(v))
		for _, s := range v {
			out = append(out, fmt.Sprint(s))
		}
		return out
	}
	return nil
}

func truncate(b []byte) string {
	if len(b) > 512 {
		return string(b[:512]) + "…"
	}
	return string(b)
}

// Handler returns h with every response it writes checked against api/openapi.yaml as an answer of
// service; failures are reported with t.Errorf. A response is checked when h returns (a stream:
// what it wrote until then). The test waits, in its cleanup, for the requests still running, so a
// report never comes after the test; close the server in a cleanup or before the test returns.
func Handler(t testing.TB, service string, h http.Handler) http.Handler {
	t.Helper()
	if _, err := contract(); err != nil {
		t.Fatal(err)
	}
	var running sync.WaitGroup
	t.Cleanup(running.Wait)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		running.Add(1)
		defer running.Done()
		req := r.Clone(r.Context()) // as it arrived: handlers may change r's URL or headers
		rec := &recorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		if !rec.wrote {
			rec.WriteHeader(http.StatusOK) // what net/http sends for a handler that wrote nothing
		}
		if rec.overflow {
			t.Errorf("%s %s: body over %d bytes, not checked against api/openapi.yaml", req.Method, req.URL.Path, maxBody)
			return
		}
		if err := Check(service, req, rec.status, rec.header, rec.body.Bytes()); err != nil {
			t.Errorf("apitest: %v", err)
		}
	})
}

// recorder passes a response through and keeps a copy of its status, headers and body.
type recorder struct {
	http.ResponseWriter
	wrote    bool
	status   int
	header   http.Header
	body     bytes.Buffer
	overflow bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.wrote, r.status, r.header = true, code, r.ResponseWriter.Header().Clone()
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wrote {
		r.WriteHeader(http.StatusOK)
	}
	if r.body.Len()+len(b) > maxBody {
		r.overflow = true
	} else {
		r.body.Write(b)
	}
	return r.ResponseWriter.Write(b)
}

// Flush passes flushes through, for streams.
func (r *recorder) Flush() {
	if !r.wrote {
		r.WriteHeader(http.StatusOK)
	}
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer (deadlines, flush).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Transport returns rt (http.DefaultTransport when nil) with every response it receives checked
// against api/openapi.yaml as an answer of service; failures are reported with t.Errorf. Bodies
// are read in full and handed on, except streams (text/event-stream), of which only the status
// and headers are checked, so that the test can read them as they come.
func Transport(t testing.TB, service string, rt http.RoundTripper) http.RoundTripper {
	t.Helper()
	if _, err := contract(); err != nil {
		t.Fatal(err)
	}
	if rt == nil {
		rt = http.DefaultTransport
	}
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		res, err := rt.RoundTrip(req)
		if err != nil {
			return res, err
		}
		var body []byte
		if !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
			body, err = io.ReadAll(io.LimitReader(res.Body, maxBody+1))
			res.Body.Close()
			if err != nil {
				return nil, fmt.Errorf("apitest: read %s %s: %w", req.Method, req.URL.Path, err)
			}
			res.Body = io.NopCloser(bytes.NewReader(body))
			if len(body) > maxBody {
				t.Errorf("%s %s: body over %d bytes, not checked against api/openapi.yaml", req.Method, req.URL.Path, maxBody)
				return res, nil
			}
		}
		if err := Check(service, req, res.StatusCode, res.Header, body); err != nil {
			t.Errorf("apitest: %v", err)
		}
		return res, nil
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
