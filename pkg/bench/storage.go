package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/pgstore"
)

// StorageResult is what one day of events costs on disk in each store, per event: the
// figures SCALING.md multiplies by the users' rate.
type StorageResult struct {
	Payload string `json:"payload"` // how payloads were drawn: "realistic" or "letters"
	Events  int    `json:"events"`
	// RawJSONBytes is the event as a client posts it (compact JSON: id, clientId, type,
	// timestamp, payload); PayloadBytes the payload alone.
	RawJSONBytes float64 `json:"raw_json_bytes_per_event"`
	PayloadBytes float64 `json:"payload_bytes_per_event"`
	// PG is the archive's day partition per event by payload compression ("pglz", "lz4"):
	// heap, TOAST and indexes, after VACUUM.
	PG map[string]PGFootprint `json:"postgres"`
	// ESBytes is Elasticsearch's primary store per document after a force merge to one
	// segment (one copy: multiply by 1 + replicas).
	ESBytes float64 `json:"elasticsearch_primary_bytes_per_event"`
}

// PGFootprint splits one partition's size per event.
type PGFootprint struct {
	Heap    float64 `json:"heap"`
	Toast   float64 `json:"toast"`
	Indexes float64 `json:"indexes"`
	Total   float64 `json:"total"`
}

// StorageStores are the stores one storage measurement writes into: a PostgreSQL store per
// compression, each on its own empty, migrated schema, and an Elasticsearch store on its own
// prefix with its URL (for the force merge and stats, which esstore does not wrap).
type StorageStores struct {
	PG    map[string]*pgstore.Store
	ES    *esstore.Store
	ESURL string
}

// MeasureStorage writes n events of one UTC day, with payloads from payload(i, at), into every
// store and reports the bytes on disk per event.
func MeasureStorage(ctx context.Context, st StorageStores, name string, n int, payload func(i int, at time.Time) []byte) (*StorageResult, error) {
	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -1)
	events := make([]event.Event, n)
	res := &StorageResult{Payload: name, Events: n, PG: map[string]PGFootprint{}}
	var raw, pay int64
	for i := range events {
		at := day.Add(time.Duration(i) * (24 * time.Hour / time.Duration(n))).Truncate(time.Microsecond)
		e := event.Event{ID: event.NewID(), ClientID: "client-" + strconv.Itoa(i%1000), Type: "storefront", Timestamp: at, IngestedAt: at,
			Payload: payload(i, at)}
		events[i] = e
		posted, err := json.Marshal(map[string]any{"id": e.ID, "clientId": e.ClientID, "type": e.Type,
			"timestamp": at.Format(time.RFC3339Nano), "payload": json.RawMessage(e.Payload)})
		if err != nil {
			return nil, fmt.Errorf("payload %d is not JSON: %w", i, err)
		}
		raw += int64(len(posted))
		pay += int64(len(e.Payload))
	}
	res.RawJSONBytes, res.PayloadBytes = float64(raw)/float64(n), float64(pay)/float64(n)

	for comp, pg := range st.PG {
		if _, err := pg.Pool().Exec(ctx, "ALTER TABLE events ALTER COLUMN payload SET COMPRESSION "+comp); err != nil {
			return nil, fmt.Errorf("%s: %w", comp, err)
		}
		for i := 0; i < n; i += 5000 {
			rows := make([]pgstore.Row, 0, 5000)
			for _, e := range events[i:min(i+5000, n)] {
				rows = append(rows, pgstore.Row{ID: e.ID, ClientID: e.ClientID, Type: e.Type, Timestamp: e.Timestamp, IngestedAt: e.IngestedAt, Payload: e.Payload})
			}
			if _, err := pg.CopyEvents(ctx, pgstore.OriginBackfill, rows); err != nil {
				return nil, fmt.Errorf("%s: %w", comp, err)
			}
		}
		part := pgstore.PartitionName(day)
		if _, err := pg.Pool().Exec(ctx, "VACUUM ANALYZE "+part); err != nil {
			return nil, fmt.Errorf("%s: vacuum: %w", comp, err)
		}
		var heap, toast, idx int64
		if err := pg.Pool().QueryRow(ctx, `SELECT pg_relation_size(c.oid),
				coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0), pg_indexes_size(c.oid)
			FROM pg_class c WHERE c.oid = $1::regclass`, part).Scan(&heap, &toast, &idx); err != nil {
			return nil, fmt.Errorf("%s: sizes: %w", comp, err)
		}
		per := func(b int64) float64 { return float64(b) / float64(n) }
		res.PG[comp] = PGFootprint{Heap: per(heap), Toast: per(toast), Indexes: per(idx), Total: per(heap + toast + idx)}
	}

	for i := 0; i < n; i += 2000 {
		if _, _, err := st.ES.BulkCreate(ctx, events[i:min(i+2000, n)]); err != nil {
			return nil, fmt.Errorf("elasticsearch: %w", err)
		}
	}
	index := st.ES.IndexFor(day)
	for _, path := range []string{"/" + index + "/_refresh", "/" + index + "/_flush", "/" + index + "/_forcemerge?max_num_segments=1"} {
		if err := esPost(ctx, st.ESURL+path, nil); err != nil {
			return nil, err
		}
	}
	var stats struct {
		Primaries struct {
			Docs  struct{ Count int64 } `json:"docs"`
			Store struct {
				SizeInBytes int64 `json:"size_in_bytes"`
			} `json:"store"`
		} `json:"primaries"`
	}
	var all struct {
		Indices map[string]json.RawMessage `json:"indices"`
	}
	if err := esGet(ctx, st.ESURL+"/"+index+"/_stats/docs,store", &all); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(all.Indices[index], &stats); err != nil || stats.Primaries.Docs.Count != int64(n) {
		return nil, fmt.Errorf("elasticsearch stats of %s: %d docs, want %d (%v)", index, stats.Primaries.Docs.Count, n, err)
	}
	res.ESBytes = float64(stats.Primaries.Store.SizeInBytes) / float64(n)
	return res, nil
}

func esPost(ctx context.Context, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return esDo(req, nil)
}

func esGet(ctx context.Context, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	return esDo(req, out)
}

func esDo(req *http.Request, out any) error {
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", req.Method, req.URL.Path, res.StatusCode, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}
