package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spillway/spillway/pkg/event"
)

// The asynchronous acknowledgement (?ack=async) and the drain at shutdown that finishes it.

// startAsync writes events in the background and reports whether it could (not while draining).
// The write holds its budget until it ends, so async requests cannot outrun Elasticsearch
// either. It gets the same acknowledgement deadline as a synchronous request, but ignores the
// breaker: the events were promised, so they are retried until the deadline.
func (h *Handler) startAsync(events []event.Event, heldBytes int64) bool {
	h.asyncMu.Lock()
	defer h.asyncMu.Unlock()
	if h.draining {
		return false
	}
	h.async.Add(1)
	h.asyncInFlight++
	go func() {
		defer func() {
			h.budget.release(heldBytes, int64(len(events)))
			h.asyncMu.Lock()
			h.asyncInFlight--
			h.asyncMu.Unlock()
			h.async.Done()
		}()
		ctx, cancel := context.WithTimeoutCause(h.asyncCtx, h.cfg.AckTimeout, errAckTimeout)
		defer cancel()
		out, err := h.w.Write(ctx, events, false)
		_, _, _, failed := h.tally(out, len(events), ackAsync)
		if failed > 0 {
			h.logs.Do("async", func(suppressed int) {
				h.log.Error("async events lost: not written within ingest.ack_timeout", "count", failed, "err", err,
					"suppressed_since_last", suppressed)
			})
		}
	}()
	return true
}

// Drain finishes the async writes and closes the writer, within ctx: the last step of an
// ordered shutdown, after the HTTP server stopped accepting and in-flight requests finished.
func (h *Handler) Drain(ctx context.Context) error {
	h.asyncMu.Lock()
	h.draining = true
	pending := h.asyncInFlight
	h.asyncMu.Unlock()
	done := make(chan struct{})
	go func() { h.async.Wait(); close(done) }()
	h.log.Info("draining", "async_requests", pending)
	// Flush repeatedly rather than waiting for the flush interval: the async writes (and their
	// retries) must not sit behind it while the grace runs out.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var err error
wait:
	for {
		_ = h.w.Flush(ctx)
		select {
		case <-done:
			break wait
		case <-ctx.Done():
			h.asyncCancel()
			<-done // writes return promptly once their context ends
			err = fmt.Errorf("async writes not finished within the shutdown grace: %w", ctx.Err())
			break wait
		case <-tick.C:
		}
	}
	if cerr := h.w.Close(ctx); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close writer: %w", cerr))
	}
	return err
}
