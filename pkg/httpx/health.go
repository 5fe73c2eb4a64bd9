package httpx

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spillway/spillway/pkg/event"
)

// Check reports whether a dependency is usable; it must return within its context.
type Check func(ctx context.Context) error

// Health serves /healthz (the process is alive) and /readyz (dependencies usable and not
// draining). It is safe for concurrent use.
type Health struct {
	draining atomic.Bool
	mu       sync.Mutex
	checks   map[string]Check
	timeout  time.Duration
}

// NewHealth returns a Health whose checks each get timeout.
func NewHealth(timeout time.Duration) *Health {
	return &Health{checks: map[string]Check{}, timeout: timeout}
}

// AddCheck registers a readiness check under name.
func (h *Health) AddCheck(name string, c Check) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks[name] = c
}

// SetDraining makes /readyz fail from now on: the first step of a graceful shutdown, so load
// balancers stop sending before the listener closes.
func (h *Health) SetDraining() { h.draining.Store(true) }

// Draining reports whether shutdown has begun.
func (h *Health) Draining() bool { return h.draining.Load() }

// Healthz answers 200 while the process runs.
func (h *Health) Healthz(w http.ResponseWriter, r *http.Request) {
	WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// Readyz answers 200 when every check passes and the process is not draining, 503 otherwise,
// with each check's result.
func (h *Health) Readyz(w http.ResponseWriter, r *http.Request) {
	if h.draining.Load() {
		WriteJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "draining"})
		return
	}
	h.mu.Lock()
	checks := make(map[string]Check, len(h.checks))
	for k, v := range h.checks {
		checks[k] = v
	}
	h.mu.Unlock()

	type result struct {
		name string
		err  error
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	defer cancel()
	ch := make(chan result, len(checks))
	for name, c := range checks {
		go func() { ch <- result{name, c(ctx)} }()
	}
	status := http.StatusOK
	out := map[string]string{}
	for range checks {
		res := <-ch
		if res.err != nil {
			status = http.StatusServiceUnavailable
			out[res.name] = res.err.Error()
		} else {
			out[res.name] = "ok"
		}
	}
	state := "ready"
	if status != http.StatusOK {
		state = "not ready"
	}
	WriteJSON(w, status, map[string]any{"status": state, "checks": out})
}

// RejectWhenDraining answers new API requests with 503 once shutdown has begun, while requests
// already in flight finish. Health, readiness and metrics stay answerable.
func RejectWhenDraining(h *Health) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if h.Draining() {
				switch r.URL.Path {
				case "/healthz", "/readyz", "/metrics":
				default:
					w.Header().Set("Connection", "close")
					WriteError(w, r, nil, &event.Error{Kind: event.ErrUnavailable, Message: "server is shutting down; retry on another instance"})
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}
