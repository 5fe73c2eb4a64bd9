// Package app is the lifecycle every Spillway binary shares: load configuration, build the
// logger, run until SIGINT/SIGTERM, and shut down in order — fail readiness, stop accepting,
// drain, close. Mains stay thin: they call Main with their role's run function.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/spillway/spillway/api"
	"github.com/spillway/spillway/pkg/auth"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/httpx"
	"github.com/spillway/spillway/pkg/resilience"
	"github.com/spillway/spillway/pkg/version"
)

// Exit statuses.
const (
	ExitOK     = 0
	ExitFailed = 1
	ExitUsage  = 2 // invalid configuration or arguments
)

// RunFunc is a binary's body: it runs until ctx ends and returns after a clean shutdown.
type RunFunc func(ctx context.Context, cfg *config.Config, args []string, logger *slog.Logger) error

// UsageError marks bad arguments; Main exits with ExitUsage.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Main loads the configuration of role from args and the environment, and calls run with a
// context cancelled on SIGINT or SIGTERM. fs may hold the binary's own flags. It returns the
// process exit status.
func Main(role config.Role, fs *pflag.FlagSet, args []string, run RunFunc) int {
	if fs == nil {
		fs = pflag.NewFlagSet(string(role), pflag.ContinueOnError)
	}
	fs.SortFlags = true
	showVersion := fs.Bool("version", false, "print the version and exit")
	cfg, rest, err := config.Load(role, fs, args, nil)
	if errors.Is(err, pflag.ErrHelp) {
		return ExitOK
	}
	if *showVersion {
		fmt.Println("spillway", role, version.String())
		return ExitOK
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "spillway %s: %v\n", role, err)
		return ExitUsage
	}
	logger := NewLogger(os.Stderr, cfg.Log).With("service", string(role))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, rest, logger); err != nil {
		var ue *UsageError
		if errors.As(err, &ue) {
			fmt.Fprintf(os.Stderr, "spillway %s: %v\n", role, err)
			return ExitUsage
		}
		logger.Error("exiting", "err", err)
		return ExitFailed
	}
	return ExitOK
}

// NewLogger builds the process's one slog.Logger.
func NewLogger(w io.Writer, c config.Log) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(strings.ToUpper(c.Level)))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// Service is what Serve needs to run one HTTP service.
type Service struct {
	Name     string // "ingest", "search", "archiver": the service label on HTTP metrics
	Logger   *slog.Logger
	HTTP     config.HTTP
	Router   *mux.Router // the API; Serve adds /healthz, /readyz and the admin routes
	Registry *prometheus.Registry
	Health   *httpx.Health
	// Drain runs after the listener has stopped accepting and in-flight requests have finished
	// (or the grace period ran out): flush buffers, answer waiters. It gets what is left of the grace.
	Drain func(ctx context.Context) error
	// OpenAPI serves the API description at /openapi.yaml (ingest and search).
	OpenAPI bool
	// Ready is closed once the listeners are open (tests use it); may be nil.
	Ready chan<- net.Addr
	// Auth, when it holds keys, protects /metrics on the public listener with an admin key.
	// (The admin listener, http.admin_addr, is not authenticated: bind it to loopback or a
	// private network.) nil: open mode.
	Auth *auth.Authenticator
}

// Mount completes the service's routers with what every service serves: request ids, HTTP
// metrics, panic recovery and the draining guard on every route; /healthz and /readyz; the
// OpenAPI document when OpenAPI is set; /metrics on the public router, or /metrics and pprof
// on the returned admin router when HTTP.AdminAddr is set (nil otherwise). Serve calls it;
// tests call it to see the router exactly as served. Call it once per Service.
func (s *Service) Mount() (admin *mux.Router) {
	metrics := httpx.NewMetrics(s.Registry, s.Name)
	httpx.Use(s.Router, httpx.WithRequestID, metrics.Middleware, httpx.Recover(s.Logger), httpx.RejectWhenDraining(s.Health))
	httpx.MountHealth(s.Router, s.Health)
	if s.OpenAPI {
		api.Mount(s.Router)
	}
	if s.HTTP.AdminAddr != "" {
		admin = httpx.NewRouter()
		httpx.Use(admin, httpx.WithRequestID) // every response carries one, as api/openapi.yaml says
		httpx.MountHealth(admin, s.Health)
		httpx.MountAdmin(admin, s.Registry, true)
		return admin
	}
	if s.Auth != nil {
		// Metrics reveal traffic, error rates and internals: on the public port they need an admin key.
		guarded := s.Router.NewRoute().Subrouter()
		guarded.Use(auth.Require(s.Auth, auth.RoleAdmin, s.WriteError))
		httpx.MountAdmin(guarded, s.Registry, false)
		return nil
	}
	httpx.MountAdmin(s.Router, s.Registry, false)
	return nil
}

// WriteError is httpx.WriteError with the service's logger, as an auth.ErrorWriter.
func (s *Service) WriteError(w http.ResponseWriter, r *http.Request, err error) {
	httpx.WriteError(w, r, s.Logger, err)
}

// maxLoggedKeyNames is how many key names the start-up line lists.
const maxLoggedKeyNames = 20

// Authenticator loads the API keys of c for a service listening on addr, refusing — as a
// usage error — to run without keys on a non-loopback address unless auth.insecure_no_auth is
// set. Running open is logged as a warning; the keys themselves never are.
func Authenticator(c config.Auth, addr string, logger *slog.Logger) (*auth.Authenticator, error) {
	a, err := auth.New(auth.Options{KeysFile: c.KeysFile, Keys: c.Keys.Value(), InsecureNoAuth: c.InsecureNoAuth, Addr: addr})
	if err != nil {
		return nil, &UsageError{Msg: err.Error()}
	}
	switch {
	case a != nil && a.Len() <= maxLoggedKeyNames:
		logger.Info("API keys loaded: requests need a key", "keys", a.Len(), "names", a.Names())
	case a != nil:
		// Thousands of names would make one line longer than log routers take (Heroku's
		// Logplex truncates lines at 10,000 bytes).
		logger.Info("API keys loaded: requests need a key", "keys", a.Len(), "names", a.Names()[:maxLoggedKeyNames], "names_omitted", a.Len()-maxLoggedKeyNames)
	case auth.IsLoopback(addr):
		logger.Warn("no API keys configured: serving WITHOUT authentication, on loopback only; anyone on this machine can read and write events",
			"addr", addr)
	default:
		logger.Warn("auth.insecure_no_auth=true: serving WITHOUT authentication on a non-loopback address; anyone who can reach it can read and write events",
			"addr", addr)
	}
	return a, nil
}

// Serve runs the service until ctx ends, then shuts down in order: /readyz fails (and, for
// HTTP.DrainDelay, new requests get 503 with Retry-After while the listeners still accept),
// listeners stop accepting and in-flight requests finish, Drain runs; all within
// HTTP.ShutdownGrace.
func Serve(ctx context.Context, s Service) error {
	admin := s.Mount()
	limits := httpx.Limits{
		ReadHeaderTimeout: s.HTTP.ReadHeaderTimeout, ReadTimeout: s.HTTP.ReadTimeout,
		WriteTimeout: s.HTTP.WriteTimeout, IdleTimeout: s.HTTP.IdleTimeout,
		MaxHeaderBytes: int(s.HTTP.MaxHeaderBytes), MaxConnections: s.HTTP.MaxConnections,
	}
	ln, err := httpx.Listen(s.HTTP.Addr, s.HTTP.MaxConnections)
	if err != nil {
		return err
	}
	srv := httpx.NewServer(s.Router, limits, s.Logger)
	var adminLn net.Listener
	var adminSrv *http.Server
	if admin != nil {
		if adminLn, err = httpx.Listen(s.HTTP.AdminAddr, 64); err != nil {
			ln.Close()
			return err
		}
		adminSrv = httpx.NewServer(admin, limits, s.Logger)
	}
	s.Logger.Info("listening", "addr", ln.Addr().String(), "admin_addr", s.HTTP.AdminAddr)
	if s.Ready != nil {
		s.Ready <- ln.Addr()
	}

	// Serving stops when ctx ends; shutdown gets its own deadline so that it can finish.
	serveCtx, cancelServe := context.WithCancel(context.Background())
	defer cancelServe()
	errc := make(chan error, 2)
	// The drain delay comes out of the grace: what is left bounds Shutdown and Drain.
	grace := s.HTTP.ShutdownGrace - s.HTTP.DrainDelay
	go func() { errc <- httpx.Serve(serveCtx, srv, ln, grace) }()
	if adminSrv != nil {
		go func() { errc <- httpx.Serve(serveCtx, adminSrv, adminLn, grace) }()
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}

	start := time.Now()
	deadline := start.Add(s.HTTP.ShutdownGrace)
	s.Logger.Info("shutting down", "grace", s.HTTP.ShutdownGrace.String(), "drain_delay", s.HTTP.DrainDelay.String())
	s.Health.SetDraining()
	if s.HTTP.DrainDelay > 0 && runErr == nil {
		// Still accepting: a load balancer sees /readyz fail and clients get 503 with
		// Retry-After (httpx.RejectWhenDraining) rather than refused connections.
		t := time.NewTimer(s.HTTP.DrainDelay)
		select {
		case <-t.C:
		case runErr = <-errc:
			t.Stop()
		}
	}
	cancelServe() // stop accepting; requests in flight finish (bounded by the grace)
	waitFor := 1
	if adminSrv != nil {
		waitFor = 2
	}
	if runErr != nil {
		waitFor--
	}
	for i := 0; i < waitFor; i++ {
		if err := <-errc; err != nil && runErr == nil {
			runErr = err
		}
	}
	if s.Drain != nil {
		dctx, cancel := context.WithDeadline(context.Background(), deadline)
		err := s.Drain(dctx)
		cancel()
		if err != nil && runErr == nil {
			runErr = fmt.Errorf("drain: %w", err)
		}
	}
	s.Logger.Info("stopped", "took", time.Since(start).String())
	return runErr
}

// Retry calls f until it succeeds or ctx ends, backing off (resilience.Backoff) from 100 ms up to
// max. It logs each failure at warn level with what.
func Retry(ctx context.Context, logger *slog.Logger, what string, max time.Duration, f func(context.Context) error) error {
	bo := &resilience.Backoff{Base: 100 * time.Millisecond, Max: max, Jitter: true}
	for {
		err := f(ctx)
		if err == nil {
			return nil
		}
		d := bo.Next()
		logger.Warn(what+" failed; retrying", "err", err, "backoff", d.String())
		if !resilience.Sleep(ctx, d, nil) {
			return ctx.Err()
		}
	}
}
