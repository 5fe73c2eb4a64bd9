// Package api holds the OpenAPI 3.1 description of Spillway's HTTP APIs (openapi.yaml, embedded),
// serves it at /openapi.yaml, and checks a service's router against it: CheckRoutes, called from
// the ingest and search tests, fails when a documented operation is not routed or a routed one is
// not documented.
package api

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"go.yaml.in/yaml/v3"
)

// OpenAPI is api/openapi.yaml, the description of the ingest and search APIs.
//
//go:embed openapi.yaml
var OpenAPI []byte

// Path is where every service serves the document.
const Path = "/openapi.yaml"

// The services an operation can belong to, as written in its x-spillway-service extension.
const (
	ServiceIngest = "ingest"
	ServiceSearch = "search"
)

// etag identifies this build's document, so clients can revalidate cheaply.
var etag = func() string {
	sum := sha256.Sum256(OpenAPI)
	return `"` + hex.EncodeToString(sum[:8]) + `"`
}()

// Handler serves OpenAPI as application/yaml, with an ETag (conditional GET and HEAD work).
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
		w.Header().Set("ETag", etag)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		http.ServeContent(w, r, "openapi.yaml", time.Time{}, bytes.NewReader(OpenAPI))
	})
}

// Mount routes GET /openapi.yaml to Handler on r.
func Mount(r *mux.Router) {
	r.Handle(Path, Handler()).Methods(http.MethodGet)
}

// Operation is one documented method on one path.
type Operation struct {
	Method      string // upper case: GET, POST, ...
	Path        string // OpenAPI template, e.g. /api/v1/events/{id}
	OperationID string
	Services    []string // from x-spillway-service
}

var methods = map[string]bool{"get": true, "put": true, "post": true, "delete": true, "options": true, "head": true, "patch": true, "trace": true}

// Operations returns the documented operations served by service ("ingest" or "search"; "" for
// all), sorted by path and method.
func Operations(service string) ([]Operation, error) {
	var doc struct {
		Paths map[string]map[string]yaml.Node `yaml:"paths"`
	}
	if err := yaml.Unmarshal(OpenAPI, &doc); err != nil {
		return nil, fmt.Errorf("parse openapi.yaml: %w", err)
	}
	var out []Operation
	for path, item := range doc.Paths {
		for key, node := range item {
			if !methods[key] {
				continue
			}
			var op struct {
				OperationID string    `yaml:"operationId"`
				Service     yaml.Node `yaml:"x-spillway-service"`
			}
			if err := node.Decode(&op); err != nil {
				return nil, fmt.Errorf("openapi.yaml %s %s: %w", key, path, err)
			}
			var services []string
			switch op.Service.Kind {
			case yaml.ScalarNode:
				services = []string{op.Service.Value}
			case yaml.SequenceNode:
				if err := op.Service.Decode(&services); err != nil {
					return nil, fmt.Errorf("openapi.yaml %s %s: x-spillway-service: %w", key, path, err)
				}
			default:
				return nil, fmt.Errorf("openapi.yaml %s %s: x-spillway-service missing", key, path)
			}
			o := Operation{Method: strings.ToUpper(key), Path: path, OperationID: op.OperationID, Services: services}
			if service == "" || o.servedBy(service) {
				out = append(out, o)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Method < out[j].Method
	})
	return out, nil
}

func (o Operation) servedBy(service string) bool {
	for _, s := range o.Services {
		if s == service {
			return true
		}
	}
	return false
}

// TB is the part of testing.TB that CheckRoutes uses; *testing.T satisfies it. (Taking this
// instead of testing.TB keeps package testing out of the service binaries.)
type TB interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// CheckRoutes reports, through t, every disagreement between router and the operations that
// openapi.yaml assigns to service ("ingest" or "search"):
//
//   - every documented operation must be routed: a request for its path (path parameters filled
//     in) and method must reach a route whose template is that same path — so a templated route
//     such as /api/v1/events/{id} registered before /api/v1/events/count is caught;
//   - every routed path and method must be documented for service.
//
// Pass the router as the service serves it: its API routes plus what app.Serve adds
// (httpx.MountHealth, httpx.MountAdmin without pprof) and Mount. Routes under /debug/pprof are
// ignored: they live on the admin listener only and are not part of the API.
func CheckRoutes(t TB, router *mux.Router, service string) {
	t.Helper()
	ops, err := Operations(service)
	if err != nil {
		t.Fatalf("api.CheckRoutes: %v", err)
		return
	}
	if len(ops) == 0 {
		t.Fatalf("api.CheckRoutes: openapi.yaml documents no operation for service %q", service)
		return
	}
	all, _ := Operations("")
	documented := map[string]bool{}
	for _, o := range ops {
		documented[o.Method+" "+o.Path] = true
	}
	otherServices := map[string][]string{}
	for _, o := range all {
		otherServices[o.Method+" "+o.Path] = o.Services
	}

	// Routed → documented.
	err = router.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		if route.GetHandler() == nil {
			return nil // a subrouter's own route
		}
		tpl, err := route.GetPathTemplate()
		if err != nil {
			t.Errorf("route without a path template (%v): it cannot be documented", err)
			return nil
		}
		path := openAPIPath(tpl)
		if strings.HasPrefix(path, "/debug/pprof") {
			return nil
		}
		ms, err := route.GetMethods()
		if err != nil {
			t.Errorf("route %s accepts every method; restrict it with Methods(...) and document each", path)
			return nil
		}
		for _, m := range ms {
			key := m + " " + path
			if documented[key] {
				continue
			}
			if s, ok := otherServices[key]; ok {
				t.Errorf("%s %s is routed by %s but documented in api/openapi.yaml only for %v (x-spillway-service)", m, path, service, s)
			} else {
				t.Errorf("%s %s is routed by %s but not documented in api/openapi.yaml", m, path, service)
			}
		}
		return nil
	})
	if err != nil {
		t.Errorf("walk routes: %v", err)
	}

	// Documented → routed, by matching a real request.
	for _, o := range ops {
		target := examplePath(o.Path)
		req, err := http.NewRequest(o.Method, target, nil)
		if err != nil {
			t.Errorf("%s %s: %v", o.Method, o.Path, err)
			continue
		}
		var m mux.RouteMatch
		matched := router.Match(req, &m)
		switch {
		case m.MatchErr == mux.ErrMethodMismatch:
			t.Errorf("%s %s is documented for %s, but the route does not accept %s", o.Method, o.Path, service, o.Method)
		case !matched || m.MatchErr != nil || m.Route == nil:
			t.Errorf("%s %s is documented for %s but not routed (request %s %s found no route)", o.Method, o.Path, service, o.Method, target)
		default:
			tpl, _ := m.Route.GetPathTemplate()
			if got := openAPIPath(tpl); got != o.Path {
				t.Errorf("%s %s is documented for %s, but %s reaches the route %s (register concrete paths before templated ones)", o.Method, o.Path, service, target, got)
			}
		}
	}
}

// openAPIPath turns a mux template into OpenAPI's form: {id:[0-9]+} becomes {id}.
func openAPIPath(tpl string) string {
	var b strings.Builder
	depth := 0
	skipping := false
	for _, c := range tpl {
		switch {
		case c == '{':
			depth++
			if depth == 1 {
				skipping = false
				b.WriteRune(c)
				continue
			}
		case c == '}':
			depth--
			if depth == 0 {
				skipping = false
				b.WriteRune(c)
				continue
			}
		case c == ':' && depth == 1:
			skipping = true
			continue
		}
		if !skipping {
			b.WriteRune(c)
		}
	}
	return b.String()
}

// examplePath fills every {param} with a value valid for the documented patterns.
func examplePath(path string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(path, '{')
		j := strings.IndexByte(path, '}')
		if i < 0 || j < i {
			b.WriteString(path)
			return b.String()
		}
		b.WriteString(path[:i])
		b.WriteString("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b")
		path = path[j+1:]
	}
}
