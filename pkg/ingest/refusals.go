package ingest

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/httpx"
)

// The refusals ingest answers with, and how they are counted and logged.

func (h *Handler) overloaded() error {
	return h.retryLater(event.ErrOverloaded, "too many events in flight (ingest.inflight_max_bytes / ingest.inflight_max_events); retry later", nil)
}

// queueing is the refusal of admission control: overloaded (429), like the budget's, because it
// is this service shedding load it cannot serve in time — a client should slow down and retry,
// and a load balancer should not take it for a failing instance, as unavailable (503) invites.
func (h *Handler) queueing(delay time.Duration) error {
	return h.retryLater(event.ErrOverloaded, fmt.Sprintf("events are waiting %s to be sent to Elasticsearch, over ingest.queue_delay_target (%s) for ingest.queue_delay_interval (%s); retry later",
		delay.Round(time.Millisecond), h.cfg.QueueDelayTarget, h.cfg.QueueDelayInterval), nil)
}

func (h *Handler) unavailable(msg string, cause error) error {
	return h.retryLater(event.ErrUnavailable, msg, cause)
}

// retryLater is a refusal of kind (event.ErrOverloaded, ErrUnavailable, ErrDeadline or
// ErrCanceled) that the client may retry after ingest.retry_after.
func (h *Handler) retryLater(kind error, msg string, cause error) error {
	return &event.Error{Kind: kind, Message: msg, RetryAfter: h.cfg.RetryAfter, Err: cause}
}

// reasonOf names a refusal of the body or its events for the refused-requests metric.
func reasonOf(err error) string {
	switch {
	case errors.Is(err, event.ErrTooLarge):
		return "too_large"
	case errors.Is(err, event.ErrOverloaded):
		return "budget"
	case errors.Is(err, event.ErrRequestTimeout):
		return "timeout"
	}
	return "invalid"
}

// fail answers with err and counts it by the status the mapper gives it. 503s are logged here,
// rate-limited: at thousands of requests per second while Elasticsearch is down, one line per
// request would be a second outage.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, reason string, err error) {
	status := httpx.ToError(err).Status
	h.m.refused.WithLabelValues(fmt.Sprint(status), reason).Inc()
	if status == http.StatusServiceUnavailable {
		h.logs.Do("503", func(suppressed int) {
			h.log.Warn("answering 503", "reason", reason, "err", err.Error(), "request_id", httpx.RequestID(r.Context()),
				"suppressed_since_last", suppressed)
		})
		httpx.WriteError(w, r, nil, err)
		return
	}
	httpx.WriteError(w, r, h.log, err)
}
