package httpx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"
)

// Limits are the server-side protections every listener gets.
type Limits struct {
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	MaxConnections    int
}

// NewServer builds an http.Server with the limits: slow-loris protection comes from the header
// and body read timeouts.
func NewServer(h http.Handler, l Limits, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// Listen opens a TCP listener that holds at most maxConns connections at once; further
// connections wait in the kernel's backlog instead of costing memory. It is
// netutil.LimitListener, whose Accept also returns when the listener closes, so a shutdown at
// the cap ends within its grace.
func Listen(addr string, maxConns int) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	if maxConns <= 0 {
		return ln, nil
	}
	return netutil.LimitListener(ln, maxConns), nil
}

// Serve runs srv on ln until ctx ends, then shuts it down gracefully: the listener closes at
// once and requests in flight get until grace to finish. It returns nil after a clean stop.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	if err != nil {
		_ = srv.Close()
		return fmt.Errorf("shutdown %s: %w", ln.Addr(), err)
	}
	return nil
}

// NewRegistry returns a Prometheus registry with the Go runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// MountHealth adds /healthz and /readyz, which stay open (no authentication) for orchestrators.
func MountHealth(r *mux.Router, h *Health) {
	r.HandleFunc("/healthz", h.Healthz).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc("/readyz", h.Readyz).Methods(http.MethodGet, http.MethodHead)
}

// MountAdmin adds /metrics and, when withPprof, /debug/pprof. Call it on the admin listener's
// router when one is configured, so profiles are never exposed on the public port.
func MountAdmin(r *mux.Router, g prometheus.Gatherer, withPprof bool) {
	r.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{})).Methods(http.MethodGet)
	if withPprof {
		r.HandleFunc("/debug/pprof/", pprof.Index)
		r.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		r.HandleFunc("/debug/pprof/profile", pprof.Profile)
		r.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		r.HandleFunc("/debug/pprof/trace", pprof.Trace)
		r.PathPrefix("/debug/pprof/").HandlerFunc(pprof.Index)
	}
}

// NewRouter returns a mux.Router whose unknown routes and methods answer in the JSON envelope;
// a 405 names the path's methods in Allow (RFC 9110, 15.5.6). Add middleware with Use, which
// reaches those answers too. Paths are matched as sent: mux would otherwise answer
// "/api/v1/events/../x" or "//x" with a 301 to the cleaned path — a redirect an API client would
// follow with a GET, dropping its body. Such paths get the routes' own answers instead: 404, or
// the lookup of an id like "..".
func NewRouter() *mux.Router {
	r := mux.NewRouter().SkipClean(true)
	r.NotFoundHandler = http.HandlerFunc(NotFound)
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if allow := Allowed(r, req); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
		}
		MethodNotAllowed(w, req)
	})
	return r
}

// Use adds middleware to r's routes, as r.Use does, and also to r's not-found and
// method-not-allowed answers, which mux runs without any middleware: so that they, too, carry
// X-Request-Id and are counted. Call it once, after NewRouter.
func Use(r *mux.Router, mw ...mux.MiddlewareFunc) {
	r.Use(mw...)
	wrap := func(h http.Handler) http.Handler {
		for i := len(mw) - 1; i >= 0; i-- {
			h = mw[i](h)
		}
		return h
	}
	r.NotFoundHandler = wrap(r.NotFoundHandler)
	r.MethodNotAllowedHandler = wrap(r.MethodNotAllowedHandler)
}

// methods are the methods Allowed tries, in the order it lists them.
var methods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodOptions}

// Allowed lists the methods r routes for req's path (whatever req's own method).
func Allowed(r *mux.Router, req *http.Request) []string {
	var out []string
	for _, m := range methods {
		probe := req.Clone(req.Context())
		probe.Method = m
		var match mux.RouteMatch
		if r.Match(probe, &match) && match.MatchErr == nil {
			out = append(out, m)
		}
	}
	return out
}
