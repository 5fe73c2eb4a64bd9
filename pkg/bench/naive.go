// Package bench holds the baselines Spillway is measured against in the same run: the naive
// design its users run today (one INSERT per event through a connection pool) and the raw
// capacity of Elasticsearch's _bulk endpoint.
package bench

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"time"

	"github.com/spillway/spillway/pkg/event"
)

// Inserter writes one event with one statement (pgstore.Store.InsertEvent).
type Inserter interface {
	InsertEvent(ctx context.Context, e event.Event) (bool, error)
}

// NaiveHandler is the users' current system reduced to its essence: every POSTed event is
// INSERTed with its own statement through a pool, and the request waits for it. It accepts
// the same single-event JSON body as ingest.
func NaiveHandler(db Inserter, timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		var in struct {
			ID        string          `json:"id"`
			ClientID  string          `json:"clientId"`
			Type      string          `json:"type"`
			Timestamp time.Time       `json:"timestamp"`
			Payload   json.RawMessage `json:"payload"`
		}
		if err := json.Unmarshal(body, &in); err != nil || in.ClientID == "" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if in.ID == "" {
			in.ID = event.NewID()
		}
		now := time.Now()
		if in.Timestamp.IsZero() {
			in.Timestamp = now
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		_, err = db.InsertEvent(ctx, event.Event{ID: in.ID, ClientID: in.ClientID, Type: in.Type, Timestamp: in.Timestamp, IngestedAt: now, Payload: in.Payload})
		if err != nil {
			// What the users saw: the pool ran dry, requests timed out.
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"accepted":1}`))
	})
}
