package search_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/event"
)

// esEnv is a test's own index prefix on the real Elasticsearch, with the template installed.
type esEnv struct {
	cfg   config.Elasticsearch
	store *esstore.Store
}

func newESEnv(t testing.TB, shards int) *esEnv {
	t.Helper()
	cfg := testenv.ES(t)
	cfg.Shards = shards
	cfg.RefreshInterval = 100 * time.Millisecond // refresh=wait_for returns sooner
	return newESEnvWith(t, cfg)
}

func newESEnvWith(t testing.TB, cfg config.Elasticsearch) *esEnv {
	t.Helper()
	store, err := esstore.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.InstallTemplate(testenv.Context(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	return &esEnv{cfg: cfg, store: store}
}

// index writes events the way ingest does — op_type create into the daily index of each
// event's timestamp, in esstore's document format — with raw _bulk requests of up to 5,000
// events, and returns once they are searchable (refresh=wait_for on every request).
func (e *esEnv) index(t testing.TB, events []event.Event) {
	t.Helper()
	const chunk = 5000
	for start := 0; start < len(events); start += chunk {
		e.bulk(t, bulkBody(e, events[start:min(start+chunk, len(events))]), "wait_for")
	}
}

// bulkBody is the _bulk request creating events in their daily indices.
func bulkBody(e *esEnv, events []event.Event) *bytes.Buffer {
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	for _, ev := range events {
		_ = enc.Encode(map[string]any{"create": map[string]any{"_index": e.store.IndexFor(ev.Timestamp), "_id": ev.ID}})
		doc, _ := esstore.EncodeDoc(ev)
		body.Write(append(doc, '\n'))
	}
	return &body
}

func (e *esEnv) bulk(t testing.TB, body io.Reader, refresh string) {
	t.Helper()
	if err := e.tryBulk(body, refresh); err != nil {
		t.Fatal(err)
	}
}

// tryBulk sends one _bulk request; any failed item is an error.
func (e *esEnv) tryBulk(body io.Reader, refresh string) error {
	res, err := http.Post(e.cfg.URLs[0]+"/_bulk?refresh="+refresh+"&filter_path=errors,items.*.error,items.*.status", "application/x-ndjson", body)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var out struct {
		Errors bool `json:"errors"`
	}
	if res.StatusCode != 200 || json.Unmarshal(b, &out) != nil || out.Errors {
		return fmt.Errorf("bulk: %d %.2000s", res.StatusCode, b)
	}
	return nil
}

// ev builds an event; ingestedAt is now.
func ev(id, client, typ string, ts time.Time) event.Event {
	return event.Event{ID: id, ClientID: client, Type: typ, Timestamp: ts, IngestedAt: time.Now(), Payload: json.RawMessage(fmt.Sprintf(`{"id":%q}`, id))}
}

// sortKey is an API event's position: timestamps in event.TimeFormat compare as strings.
func sortKey(e apiEvent) string { return e.Timestamp + "\x00" + e.ID }
