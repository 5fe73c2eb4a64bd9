// Package ingest is the write API: POST /api/v1/events. It reads and validates a batch of
// events, holds it within an in-flight budget, hands it to a Writer (Elasticsearch bulk
// indexing with group commit) and answers only once every event is durable — or at once, for
// ?ack=async, with the events still written before the process exits.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillway/spillway/pkg/auth"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/httpx"
	"github.com/spillway/spillway/pkg/ratelimit"
	"github.com/spillway/spillway/pkg/resilience"
)

// Writer stores events durably; *esstore.BulkWriter implements it.
type Writer interface {
	// Write stores the events and returns one outcome per event, in order. With searchable it
	// returns once they are visible to search. It returns by ctx's deadline at the latest, with
	// an error matching event.ErrUnavailable if any event is still Pending. Safe for concurrent
	// use.
	Write(ctx context.Context, events []event.Event, searchable bool) ([]event.Outcome, error)
	// Flush sends what is queued now instead of at the end of its linger, within ctx.
	Flush(ctx context.Context) error
	// Close sends everything queued and stops accepting writes, within ctx.
	Close(ctx context.Context) error
	// QueueDelay is how long the oldest event waiting to be sent to Elasticsearch has waited
	// (beyond any linger the writer was configured with): the input of admission control. It is
	// cheap and safe for concurrent use.
	QueueDelay() time.Duration
}

// Monitor watches the Writer's bulk requests: it keeps the ingest metrics and the breaker that
// answers 503 at once while Elasticsearch is unreachable. Pass ObserveFlush as the writer's
// esstore.BulkConfig.OnFlush, and the Monitor to New.
type Monitor struct {
	metrics *Metrics
	breaker *breaker
}

// NewMonitor registers the ingest metrics on reg. While the breaker is open it lets one request
// through per probeInterval (ingest.retry_after: what clients are told to wait).
func NewMonitor(reg prometheus.Registerer, probeInterval time.Duration, logger *slog.Logger) *Monitor {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &Monitor{metrics: NewMetrics(reg)}
	m.breaker = newBreaker(probeInterval, func(open bool) {
		if open {
			m.metrics.breakerOpen.Set(1)
			logger.Warn("elasticsearch unreachable: answering 503 at once until a probe succeeds",
				"failed_bulk_requests", breakerThreshold, "probe_interval", probeInterval.String())
		} else {
			m.metrics.breakerOpen.Set(0)
			logger.Info("elasticsearch reachable again: accepting events")
		}
	})
	return m
}

// ObserveFlush records one bulk request. It is fast and safe for concurrent use.
func (m *Monitor) ObserveFlush(f event.Flush) {
	m.metrics.observeFlush(f)
	m.breaker.observe(f.Failed())
}

// Options are what New needs besides the configuration.
type Options struct {
	Writer  Writer
	Monitor *Monitor
	Logger  *slog.Logger
	// Ready, when set, must return nil before events are accepted (503 otherwise). The ingest
	// command uses it to refuse events until the index template is installed: an index created
	// without it would get dynamic mappings.
	Ready func() error
	// Limiter, when set, rate-limits events per API key, or per clientId when the service runs
	// without keys (ratelimit.ingest_events_per_second).
	Limiter Limiter
}

// Limiter charges events to principals' token buckets; *ratelimit.Limiter implements it. Both
// methods are safe for concurrent use.
type Limiter interface {
	// AllowAll charges units to each bucket, all or nothing; when refused it charges none and
	// says how long to wait.
	AllowAll(units map[string]int) (ok bool, retryAfter time.Duration)
	// Blocked reports, taking nothing, whether a bucket is empty.
	Blocked(bucket string) (blocked bool, retryAfter time.Duration)
}

// Handler serves POST /api/v1/events.
type Handler struct {
	cfg    config.Ingest
	w      Writer
	mon    *Monitor
	m      *Metrics
	budget *budget
	adm    *admission
	log    *slog.Logger
	ready  func() error
	limit  Limiter
	limits event.Limits
	now    func() time.Time

	// Repeated failures are logged at most every few seconds, never once per request or event.
	logs *resilience.Throttle // repeated warnings: one per kind per 10 s, with the count held back

	asyncMu       sync.Mutex
	draining      bool
	async         sync.WaitGroup
	asyncCtx      context.Context // ends when the drain's grace runs out
	asyncCancel   context.CancelFunc
	asyncInFlight int
}

// New returns the handler.
func New(cfg config.Ingest, opts Options) *Handler {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{
		cfg: cfg, w: opts.Writer, mon: opts.Monitor, m: opts.Monitor.metrics, log: logger, ready: opts.Ready, limit: opts.Limiter,
		budget: newBudget(int64(cfg.InflightMaxBytes), int64(cfg.InflightMaxEvents), opts.Monitor.metrics),
		limits: event.Limits{
			MaxEvents: cfg.MaxEvents, MaxPayloadBytes: int(cfg.MaxPayloadBytes), MaxPayloadDepth: cfg.MaxPayloadDepth,
			MaxPayloadKeys: cfg.MaxPayloadKeys, MaxFutureSkew: cfg.MaxFutureSkew, MaxPastAge: cfg.MaxPastAge,
		},
		now:  time.Now,
		logs: &resilience.Throttle{Every: 10 * time.Second},
	}
	h.adm = &admission{target: cfg.QueueDelayTarget, interval: cfg.QueueDelayInterval, delay: opts.Writer.QueueDelay, now: time.Now,
		onChange: func(refusing bool, d time.Duration) {
			if refusing {
				h.logs.Do("queue", func(suppressed int) {
					h.log.Warn("events wait too long for Elasticsearch: refusing new requests with 429 until the queue drains",
						"queue_delay", d.String(), "target", cfg.QueueDelayTarget.String(), "interval", cfg.QueueDelayInterval.String(),
						"suppressed_since_last", suppressed)
				})
			}
		}}
	h.asyncCtx, h.asyncCancel = context.WithCancel(context.Background())
	return h
}

// Mount adds the API's routes to r.
func (h *Handler) Mount(r *mux.Router) {
	r.HandleFunc("/api/v1/events", h.Post).Methods(http.MethodPost)
}

// Response is the body of 201 Created.
type Response struct {
	// Accepted counts the request's events that are now stored, duplicates included.
	Accepted int `json:"accepted"`
	// Duplicates counts events whose id already existed (a retry): stored once, not twice.
	Duplicates int `json:"duplicates"`
	// IDs are the events' ids in request order, server-assigned where the client gave none.
	IDs []string `json:"ids"`
}

// AsyncResponse is the body of 202 Accepted (?ack=async).
type AsyncResponse struct {
	Accepted int      `json:"accepted"`
	IDs      []string `json:"ids"`
}

type ackMode int

const (
	ackSync ackMode = iota
	ackSearchable
	ackAsync
)

func (a ackMode) String() string {
	return [...]string{"sync", "searchable", "async"}[a]
}

func parseAck(r *http.Request) (ackMode, error) {
	q := r.URL.Query()
	bad := func(field, msg string) error {
		return &event.ValidationError{Message: field + ": " + msg, Details: []event.FieldError{{Index: -1, Field: field, Message: msg}}}
	}
	// A parameter given empty (?ack=) is not absent: it is refused like any other value, as the
	// document's enums say.
	mode := ackSync
	switch v := q.Get("wait"); {
	case !q.Has("wait"):
	case v == "searchable":
		mode = ackSearchable
	default:
		return 0, bad("wait", fmt.Sprintf("must be searchable or absent, got %q", v))
	}
	switch v := q.Get("ack"); v {
	case "":
		if q.Has("ack") {
			return 0, bad("ack", fmt.Sprintf("must be async or absent, got %q", v))
		}
	case "async":
		if mode == ackSearchable {
			return 0, bad("ack", "ack=async cannot be combined with wait=searchable")
		}
		mode = ackAsync
	default:
		return 0, bad("ack", fmt.Sprintf("must be async or absent, got %q", v))
	}
	return mode, nil
}

// Post handles POST /api/v1/events.
func (h *Handler) Post(w http.ResponseWriter, r *http.Request) {
	received := h.now()
	mode, err := parseAck(r)
	if err != nil {
		h.fail(w, r, "invalid", err)
		return
	}
	format, err := format(r.Header)
	if err != nil {
		h.fail(w, r, "unsupported_media", err)
		return
	}
	gz, err := gzipped(r.Header)
	if err != nil {
		h.fail(w, r, "unsupported_media", err)
		return
	}
	if h.ready != nil {
		if err := h.ready(); err != nil {
			h.fail(w, r, "not_ready", h.unavailable("not ready: "+err.Error(), err))
			return
		}
	}
	// A key whose bucket is empty is refused before its body is read: a flooding client then
	// costs little more than its connection. (Without keys the buckets are per clientId, which
	// only the body names.)
	p := auth.FromContext(r.Context())
	if h.limit != nil && p != auth.Anonymous {
		if blocked, after := h.limit.Blocked(keyBucket(p)); blocked {
			h.fail(w, r, "rate_limited", ratelimit.Exceeded("API key "+strconv.Quote(p.Name), "ratelimit.ingest_events_per_second", after))
			return
		}
	}
	// Before reading anything: while Elasticsearch is unreachable, answer at once.
	tripped, ok := h.mon.breaker.allow()
	if !ok {
		h.fail(w, r, "breaker", h.unavailable("Elasticsearch is unreachable; retry later with the same ids", errBreakerOpen))
		return
	}
	// Before reading anything, too: while events queue longer than Elasticsearch can take them,
	// a new request would only wait behind them.
	if ok, delay := h.adm.admit(); !ok {
		h.fail(w, r, "queue_delay", h.queueing(delay))
		return
	}

	body, held, err := h.readBody(w, r, gz)
	defer func() { h.budget.release(held, 0) }()
	if err != nil {
		h.fail(w, r, reasonOf(err), err)
		return
	}
	events, err := event.Decode(body, format, received, h.limits)
	if err != nil {
		h.fail(w, r, reasonOf(err), err)
		return
	}
	// All or nothing, like validation: one event for a client the key may not act for refuses
	// the whole request before anything is written.
	if err := forbidden(p, events); err != nil {
		h.fail(w, r, "forbidden", err)
		return
	}
	if err := h.charge(p, events); err != nil {
		h.fail(w, r, "rate_limited", err)
		return
	}
	if !h.budget.acquire(0, int64(len(events))) {
		h.fail(w, r, "budget", h.overloaded())
		return
	}
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}

	if mode == ackAsync {
		if !h.startAsync(events, held) {
			h.budget.release(0, int64(len(events)))
			h.fail(w, r, "draining", h.unavailable("server is shutting down; retry on another instance", errors.New("draining")))
			return
		}
		held = 0 // the async write releases the bytes
		httpx.WriteJSON(w, http.StatusAccepted, AsyncResponse{Accepted: len(ids), IDs: ids})
		return
	}
	defer h.budget.release(0, int64(len(events)))

	ctx, cancel := context.WithTimeoutCause(r.Context(), h.cfg.AckTimeout, errAckTimeout)
	defer cancel()
	ctx, abort := context.WithCancelCause(ctx)
	defer abort(nil)
	stop := context.AfterFunc(tripped, func() { abort(errBreakerOpen) })
	defer stop()

	out, werr := h.w.Write(ctx, events, mode == ackSearchable)
	res, rejected, nRejected, failed := h.tally(out, len(events), mode)
	res.IDs = ids
	switch {
	case werr != nil || failed > 0:
		cause := context.Cause(ctx)
		reason, kind, msg := "deadline", event.ErrDeadline, fmt.Sprintf("%d of %d events were not acknowledged within ingest.ack_timeout (%s); retry with the same ids", failed, len(events), h.cfg.AckTimeout)
		switch {
		case errors.Is(cause, errBreakerOpen):
			reason, kind, msg = "breaker", event.ErrUnavailable, fmt.Sprintf("Elasticsearch is unreachable; %d of %d events were not acknowledged; retry later with the same ids", failed, len(events))
		case r.Context().Err() != nil:
			reason, kind, msg = "client_gone", event.ErrCanceled, "the client went away before the acknowledgement"
		case !errors.Is(cause, errAckTimeout) && werr != nil:
			reason, kind, msg = "unavailable", event.ErrUnavailable, fmt.Sprintf("Elasticsearch did not acknowledge %d of %d events; retry later with the same ids", failed, len(events))
		}
		if why := itemReason(out); why != "" && (reason == "deadline" || reason == "unavailable") {
			// Say why, when Elasticsearch said it (a write block, a full disk, a rejected-execution
			// queue): "not acknowledged in time" alone leaves clients and operators guessing.
			msg += "; Elasticsearch answered: " + why
		}
		if werr == nil {
			werr = errors.New("events pending without an error")
		}
		h.fail(w, r, reason, h.retryLater(kind, msg, werr))
	case len(rejected) > 0:
		h.fail(w, r, "rejected", &event.Error{Kind: event.ErrRejected,
			Message: fmt.Sprintf("Elasticsearch rejected %d of %d events; the other %d are stored (resending them with the same ids is safe)",
				nRejected, len(events), len(events)-nRejected),
			Details: rejected})
	default:
		httpx.WriteJSON(w, http.StatusCreated, res)
	}
}

// itemReason is Elasticsearch's reason for the last pending event it answered with an error.
// Transport errors are left out: they name internal addresses and say no more than the breaker.
func itemReason(out []event.Outcome) string {
	for i := len(out) - 1; i >= 0; i-- {
		if o := out[i]; o.Result == event.Pending && o.Status != 0 && o.Reason != "" {
			return o.Reason
		}
	}
	return ""
}

// errAckTimeout is the cause of a request whose acknowledgement deadline passed.
var errAckTimeout = errors.New("acknowledgement deadline passed (ingest.ack_timeout)")

// tally counts outcomes into the response and the metrics.
func (h *Handler) tally(out []event.Outcome, n int, mode ackMode) (res Response, rejected []event.FieldError, nRejected, failed int) {
	var accepted, dups, retries int
	if out == nil {
		failed = n // the writer failed before sending anything
	}
	for i, o := range out {
		retries += max(o.Attempts-1, 0)
		switch o.Result {
		case event.Created:
			accepted++
		case event.Duplicate:
			dups++
		case event.Rejected:
			nRejected++
			if len(rejected) < event.MaxDetails {
				rejected = append(rejected, event.FieldError{Index: i, Field: "",
					Message: fmt.Sprintf("rejected by Elasticsearch (status %d): %s", o.Status, o.Reason)})
			}
		default:
			failed++
		}
	}
	ack := mode.String()
	h.m.events.WithLabelValues(outcomeAccepted, ack).Add(float64(accepted))
	h.m.events.WithLabelValues(outcomeDuplicated, ack).Add(float64(dups))
	h.m.events.WithLabelValues(outcomeRejected, ack).Add(float64(nRejected))
	h.m.events.WithLabelValues(outcomeFailed, ack).Add(float64(failed))
	h.m.retries.Add(float64(retries))
	if nRejected > 0 {
		h.logs.Do("rejected", func(suppressed int) {
			for _, o := range out {
				if o.Result == event.Rejected {
					h.log.Warn("elasticsearch rejected events", "count", nRejected, "status", o.Status, "reason", o.Reason, "suppressed_since_last", suppressed)
					return
				}
			}
		})
	}
	return Response{Accepted: accepted + dups, Duplicates: dups}, rejected, nRejected, failed
}
