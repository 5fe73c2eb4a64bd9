package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"go.yaml.in/yaml/v3"

	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/httpx"
)

func loadDoc(t *testing.T) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	return doc
}

// resolve follows a local JSON pointer (#/components/...) in doc.
func resolve(doc map[string]any, ref string) (any, bool) {
	if !strings.HasPrefix(ref, "#/") {
		return nil, false
	}
	var cur any = doc
	for _, part := range strings.Split(ref[2:], "/") {
		part = strings.NewReplacer("~1", "/", "~0", "~").Replace(part)
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// deref returns v, or what its $ref points to.
func deref(t *testing.T, doc map[string]any, v any) map[string]any {
	t.Helper()
	m, _ := v.(map[string]any)
	if ref, ok := m["$ref"].(string); ok {
		target, ok := resolve(doc, ref)
		if !ok {
			t.Fatalf("unresolved $ref %s", ref)
		}
		return deref(t, doc, target)
	}
	return m
}

func walk(v any, path string, f func(path string, m map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		f(path, x)
		for k, c := range x {
			walk(c, path+"/"+k, f)
		}
	case []any:
		for i, c := range x {
			walk(c, fmt.Sprintf("%s/%d", path, i), f)
		}
	}
}

// TestDocument checks openapi.yaml beyond parsing: OpenAPI 3.1, every $ref resolves, every
// operation has a unique operationId, a service, a success response and declared path
// parameters; API routes require the bearer or X-API-Key scheme, operations routes none (/metrics
// optionally); their 429 and 503 carry Retry-After.
func TestDocument(t *testing.T) {
	doc := loadDoc(t)
	if doc["openapi"] != "3.1.0" {
		t.Errorf("openapi %v, want 3.1.0", doc["openapi"])
	}
	refs := 0
	walk(doc, "#", func(path string, m map[string]any) {
		if ref, ok := m["$ref"].(string); ok {
			refs++
			if _, ok := resolve(doc, ref); !ok {
				t.Errorf("%s: $ref %s does not resolve", path, ref)
			}
		}
	})
	if refs == 0 {
		t.Error("no $ref found: the walk is broken")
	}
	schemes := deref(t, doc, deref(t, doc, doc["components"])["securitySchemes"])
	if s := deref(t, doc, schemes["bearerAuth"]); s["type"] != "http" || s["scheme"] != "bearer" {
		t.Errorf("bearerAuth scheme: %v", s)
	}
	if s := deref(t, doc, schemes["apiKeyAuth"]); s["type"] != "apiKey" || s["in"] != "header" || s["name"] != "X-API-Key" {
		t.Errorf("apiKeyAuth scheme: %v", s)
	}

	ops, err := Operations("")
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) < 10 {
		t.Fatalf("%d operations documented", len(ops))
	}
	ids := map[string]bool{}
	paths := doc["paths"].(map[string]any)
	paramRE := regexp.MustCompile(`\{([^}]+)\}`)
	for _, o := range ops {
		name := o.Method + " " + o.Path
		if o.OperationID == "" || ids[o.OperationID] {
			t.Errorf("%s: operationId %q missing or repeated", name, o.OperationID)
		}
		ids[o.OperationID] = true
		for _, s := range o.Services {
			if s != ServiceIngest && s != ServiceSearch {
				t.Errorf("%s: x-spillway-service %q", name, s)
			}
		}
		op := paths[o.Path].(map[string]any)[strings.ToLower(o.Method)].(map[string]any)

		declared := map[string]bool{}
		params, _ := op["parameters"].([]any)
		for _, p := range params {
			pm := deref(t, doc, p)
			if pm["in"] == "path" {
				if pm["required"] != true {
					t.Errorf("%s: path parameter %v must be required", name, pm["name"])
				}
				declared[pm["name"].(string)] = true
			}
		}
		for _, m := range paramRE.FindAllStringSubmatch(o.Path, -1) {
			if !declared[m[1]] {
				t.Errorf("%s: path parameter {%s} not declared", name, m[1])
			}
		}

		security, hasSecurity := op["security"].([]any)
		if strings.HasPrefix(o.Path, "/api/") {
			got := map[string]bool{}
			for _, s := range security {
				for k := range s.(map[string]any) {
					got[k] = true
				}
			}
			if !got["bearerAuth"] || !got["apiKeyAuth"] {
				t.Errorf("%s: security %v, want bearerAuth or apiKeyAuth", name, security)
			}
		} else if hasSecurity {
			// Operations routes stay open to orchestrators; only /metrics may ask for a key
			// (with keys configured), so its security must keep the anonymous alternative {}.
			open := false
			for _, s := range security {
				open = open || len(s.(map[string]any)) == 0
			}
			if o.Path != "/metrics" || !open {
				t.Errorf("%s: operations routes are never authenticated (only /metrics may, optionally: security %v)", name, security)
			}
		}

		responses := op["responses"].(map[string]any)
		ok2xx := false
		for code, r := range responses {
			if strings.HasPrefix(code, "2") {
				ok2xx = true
			}
			// API errors go through httpx.WriteError, which sets Retry-After on 429 and 503;
			// /readyz's 503 is a probe answer, not a retry hint.
			if (code == "429" || code == "503") && strings.HasPrefix(o.Path, "/api/") {
				headers, _ := deref(t, doc, r)["headers"].(map[string]any)
				if _, ok := headers["Retry-After"]; !ok {
					t.Errorf("%s: %s response without Retry-After", name, code)
				}
			}
		}
		if !ok2xx {
			t.Errorf("%s: no 2xx response", name)
		}
	}
	for _, want := range []string{"POST /api/v1/events", "GET /api/v1/events", "GET /api/v1/events/{id}",
		"GET /api/v1/events/count", "GET /api/v1/events/stream", "GET /healthz", "GET /readyz", "GET /metrics", "GET /openapi.yaml"} {
		found := false
		for _, o := range ops {
			found = found || o.Method+" "+o.Path == want
		}
		if !found {
			t.Errorf("%s is not documented", want)
		}
	}
	post := paths["/api/v1/events"].(map[string]any)["post"].(map[string]any)
	for _, code := range []string{"201", "202", "400", "401", "403", "413", "415", "429", "503"} {
		if _, ok := post["responses"].(map[string]any)[code]; !ok {
			t.Errorf("POST /api/v1/events: response %s not documented", code)
		}
	}
	content := deref(t, doc, post["requestBody"])["content"].(map[string]any)
	for _, ct := range []string{"application/json", "application/x-ndjson"} {
		if _, ok := content[ct]; !ok {
			t.Errorf("POST /api/v1/events: body %s not documented", ct)
		}
	}
}

// schemaProps returns the property names of a schema, following $ref.
func schemaProps(t *testing.T, doc map[string]any, schema any) map[string]any {
	t.Helper()
	props, _ := deref(t, doc, schema)["properties"].(map[string]any)
	return props
}

func jsonKeys(t *testing.T, v any) []string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return sortedKeys(m)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestSchemasMatchCode compares the documented bodies with the Go types that produce them: the
// event (pkg/event) and the error envelope (pkg/httpx).
func TestSchemasMatchCode(t *testing.T) {
	doc := loadDoc(t)
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)

	ev := event.Event{ID: "a", ClientID: "c", Type: "t", Timestamp: time.Now(), IngestedAt: time.Now(), Payload: json.RawMessage(`{}`)}
	if got, want := sortedKeys(schemaProps(t, doc, schemas["Event"])), jsonKeys(t, ev); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("Event schema properties %v, event.Event JSON %v", got, want)
	}
	for name := range schemaProps(t, doc, schemas["NewEvent"]) {
		if _, ok := schemaProps(t, doc, schemas["Event"])[name]; !ok {
			t.Errorf("NewEvent property %q is not an event field", name)
		}
	}

	env := httpx.Envelope{Error: httpx.EnvelopeError{Code: "c", Message: "m", Details: []event.FieldError{{Index: 1, Field: "f", Message: "m"}}}}
	errProps := schemaProps(t, doc, schemas["Error"])
	if got := sortedKeys(errProps); strings.Join(got, ",") != strings.Join(jsonKeys(t, env), ",") {
		t.Errorf("Error schema %v, httpx.Envelope JSON %v", got, jsonKeys(t, env))
	}
	inner := schemaProps(t, doc, errProps["error"])
	if got, want := sortedKeys(inner), jsonKeys(t, env.Error); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("error object schema %v, httpx.EnvelopeError JSON %v", got, want)
	}
	if got, want := sortedKeys(schemaProps(t, doc, schemas["FieldError"])), jsonKeys(t, env.Error.Details[0]); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("FieldError schema %v, event.FieldError JSON %v", got, want)
	}
}

func TestHandler(t *testing.T) {
	r := httpx.NewRouter()
	Mount(r)
	srv := httptest.NewServer(r)
	defer srv.Close()

	resp, err := http.Get(srv.URL + Path)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/yaml") {
		t.Fatalf("GET %s: %s %s", Path, resp.Status, resp.Header.Get("Content-Type"))
	}
	if string(body) != string(OpenAPI) {
		t.Error("served document differs from the embedded one")
	}

	req, _ := http.NewRequest(http.MethodGet, srv.URL+Path, nil)
	req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusNotModified {
		t.Errorf("conditional GET with the ETag: %s, want 304", resp2.Status)
	}

	resp3, err := http.Post(srv.URL+Path, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp3.Body.Close()
	if resp3.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST %s: %s, want 405", Path, resp3.Status)
	}
}

// recorder is a TB that collects failures, to test CheckRoutes itself.
type recorder struct{ errs []string }

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, a ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, a...))
}
func (r *recorder) Fatalf(format string, a ...any) {
	r.errs = append(r.errs, "FATAL "+fmt.Sprintf(format, a...))
}

func noop(http.ResponseWriter, *http.Request) {}

// serviceRouter builds a router the way a service is served: its API routes, then what
// app.Serve adds (health, metrics) and Mount.
func serviceRouter(api func(r *mux.Router)) *mux.Router {
	r := httpx.NewRouter()
	api(r)
	httpx.MountHealth(r, httpx.NewHealth(time.Second))
	httpx.MountAdmin(r, httpx.NewRegistry(), false)
	Mount(r)
	return r
}

func ingestRoutes(r *mux.Router) {
	r.HandleFunc("/api/v1/events", noop).Methods(http.MethodPost)
}

func searchRoutes(r *mux.Router) {
	v1 := r.PathPrefix("/api/v1").Subrouter()
	v1.HandleFunc("/events", noop).Methods(http.MethodGet)
	v1.HandleFunc("/events/count", noop).Methods(http.MethodGet)
	v1.HandleFunc("/events/stream", noop).Methods(http.MethodGet)
	v1.HandleFunc("/events/{id:[A-Za-z0-9._:-]+}", noop).Methods(http.MethodGet)
}

func TestCheckRoutes(t *testing.T) {
	tests := []struct {
		name    string
		service string
		routes  func(r *mux.Router)
		want    []string // substrings, one per expected failure
	}{
		{"ingest agrees", ServiceIngest, ingestRoutes, nil},
		{"search agrees (subrouter, regexp parameter)", ServiceSearch, searchRoutes, nil},
		{"documented route missing", ServiceIngest, func(r *mux.Router) {},
			[]string{"POST /api/v1/events is documented for ingest but not routed"}},
		{"undocumented route", ServiceIngest, func(r *mux.Router) {
			ingestRoutes(r)
			r.HandleFunc("/api/v1/events/bulk", noop).Methods(http.MethodPost)
		}, []string{"POST /api/v1/events/bulk is routed by ingest but not documented"}},
		{"route of the other service", ServiceIngest, func(r *mux.Router) {
			ingestRoutes(r)
			r.HandleFunc("/api/v1/events/count", noop).Methods(http.MethodGet)
		}, []string{"GET /api/v1/events/count is routed by ingest but documented in api/openapi.yaml only for [search]"}},
		{"method not routed", ServiceIngest, func(r *mux.Router) {
			r.HandleFunc("/api/v1/events", noop).Methods(http.MethodPut)
		}, []string{"PUT /api/v1/events is routed by ingest but not documented",
			"POST /api/v1/events is documented for ingest, but the route does not accept POST"}},
		{"templated route shadows concrete ones", ServiceSearch, func(r *mux.Router) {
			r.HandleFunc("/api/v1/events", noop).Methods(http.MethodGet)
			r.HandleFunc("/api/v1/events/{id}", noop).Methods(http.MethodGet)
			r.HandleFunc("/api/v1/events/count", noop).Methods(http.MethodGet)
			r.HandleFunc("/api/v1/events/stream", noop).Methods(http.MethodGet)
		}, []string{"GET /api/v1/events/count is documented for search, but /api/v1/events/count reaches the route /api/v1/events/{id}",
			"GET /api/v1/events/stream is documented for search, but /api/v1/events/stream reaches the route /api/v1/events/{id}"}},
		{"route without methods", ServiceIngest, func(r *mux.Router) {
			ingestRoutes(r)
			r.HandleFunc("/api/v1/anything", noop)
		}, []string{"route /api/v1/anything accepts every method"}},
		{"unknown service", "archiver", ingestRoutes, []string{`FATAL api.CheckRoutes: openapi.yaml documents no operation for service "archiver"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			CheckRoutes(rec, serviceRouter(tc.routes), tc.service)
			if len(rec.errs) != len(tc.want) {
				t.Fatalf("got %d failures, want %d:\n%s", len(rec.errs), len(tc.want), strings.Join(rec.errs, "\n"))
			}
			for _, w := range tc.want {
				found := false
				for _, e := range rec.errs {
					found = found || strings.Contains(e, w)
				}
				if !found {
					t.Errorf("no failure contains %q; got:\n%s", w, strings.Join(rec.errs, "\n"))
				}
			}
		})
	}
	// The real thing passes through *testing.T.
	CheckRoutes(t, serviceRouter(ingestRoutes), ServiceIngest)
}

func TestOpenAPIPath(t *testing.T) {
	for in, want := range map[string]string{
		"/api/v1/events":                   "/api/v1/events",
		"/api/v1/events/{id}":              "/api/v1/events/{id}",
		"/api/v1/events/{id:[0-9]+}":       "/api/v1/events/{id}",
		"/a/{x:[a-z]{2,3}}/b/{y}":          "/a/{x}/b/{y}",
		"/a/{x:(?:foo|bar)}/{y:[^/]+}/{z}": "/a/{x}/{y}/{z}",
	} {
		if got := openAPIPath(in); got != want {
			t.Errorf("openAPIPath(%q) = %q, want %q", in, got, want)
		}
	}
}
