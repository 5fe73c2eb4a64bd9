package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/pgstore"
)

// eventSize is one class of events docs/heroku.md sizes the recipe for, with the bytes on disk
// per event that TestStorageSizing measured for realistic events of that size (payload_test.go),
// everything included.
type eventSize struct {
	// JSON is an event as the API receives it (envelope and payload), in bytes.
	JSON int
	// Archive: a day partition of the archive (heap, TOAST with lz4, the UNIQUE (id) index and
	// the two inherited indexes).
	Archive int
	// Index: a daily Elasticsearch index, primary copy, after a force merge.
	Index int
}

// eventSizes are the documented figures: the users' largest events and a smaller kind.
var eventSizes = []eventSize{
	{JSON: 5000, Archive: 3540, Index: 4220},
	{JSON: 1000, Archive: 1550, Index: 1260},
}

// sizingTolerance is how far a measurement may drift from the documented figure.
const sizingTolerance = 0.15

// sizingEvents draws n realistic events of about size bytes of JSON, of one UTC day, the same
// for a given seed.
func sizingEvents(n, size int, seed uint64) []event.Event {
	r := rand.New(rand.NewPCG(seed, seed+1))
	day := time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC)
	evs := make([]event.Event, n)
	for i := range evs {
		ts := day.Add(time.Duration(r.Int64N(int64(24 * time.Hour)))).Truncate(time.Microsecond)
		evs[i] = event.Event{ID: fmt.Sprintf("%08x-%04x-7%03x-%04x-%012x", r.Uint32(), r.IntN(1<<16), r.IntN(1<<12), r.IntN(1<<16), r.Int64N(1<<48)),
			ClientID: fmt.Sprintf("client-%d", r.IntN(5000)), Type: eventNames[r.IntN(len(eventNames))],
			Timestamp: ts, IngestedAt: ts.Add(time.Duration(r.IntN(2000)) * time.Millisecond),
			Payload: realisticPayload(r, size-200)} // the envelope is ~200 bytes
	}
	return evs
}

// apiBytes is the mean size of the events as JSON in an ingest request.
func apiBytes(evs []event.Event) float64 {
	var n int
	for _, e := range evs {
		b, _ := json.Marshal(map[string]any{"id": e.ID, "clientId": e.ClientID, "type": e.Type,
			"timestamp": e.Timestamp.Format(event.TimeFormat), "payload": e.Payload})
		n += len(b)
	}
	return float64(n) / float64(len(evs))
}

// TestStorageSizing measures what one realistic event of each documented size costs on disk in
// each store and holds docs/heroku.md's sizing figures to it:
//
//	CI=true go test -run TestStorageSizing -v ./deploy/
//
// PostgreSQL: the archive's day partition (its own UNIQUE (id), the two inherited indexes,
// payload jsonb compressed with lz4), written through the archive's own path, vacuumed, and
// measured with pg_total_relation_size. pglz is measured alongside, for the comparison. Elasticsearch: a daily index from the event
// template, bulk-loaded, force-merged to one segment, measured by its primary store size.
func TestStorageSizing(t *testing.T) {
	n := 10000
	if !testenv.Short() {
		n = 50000
	}
	for _, size := range eventSizes {
		t.Run(fmt.Sprintf("%dB", size.JSON), func(t *testing.T) {
			evs := sizingEvents(n, size.JSON, 42)
			jsonBytes := apiBytes(evs)
			if jsonBytes < 0.9*float64(size.JSON) || jsonBytes > 1.1*float64(size.JSON) {
				t.Fatalf("generated events average %.0f bytes of JSON, want about %d", jsonBytes, size.JSON)
			}
			t.Run("postgres", func(t *testing.T) {
				ctx := testenv.Context(t, 10*time.Minute)
				sizes := map[string]float64{}
				for _, compression := range []string{"lz4", "pglz"} {
					sizes[compression] = archiveBytes(t, ctx, compression, evs)
				}
				t.Logf("PostgreSQL, %d events of %.0f bytes of JSON: %.0f bytes on disk per event with lz4 (%.2f of the JSON), %.0f with pglz",
					n, jsonBytes, sizes["lz4"], sizes["lz4"]/jsonBytes, sizes["pglz"])
				checkFigure(t, "Archive", sizes["lz4"], size.Archive)
			})
			t.Run("elasticsearch", func(t *testing.T) {
				perEvent := indexBytes(t, evs)
				t.Logf("Elasticsearch, %d events of %.0f bytes of JSON, one segment: %.0f bytes per event in the primary copy (%.2f of the JSON)",
					n, jsonBytes, perEvent, perEvent/jsonBytes)
				checkFigure(t, "Index", perEvent, size.Index)
			})
		})
	}
}

// indexBytes loads evs into a daily index of their own prefix and returns its primary store size
// per event after a force merge to one segment.
func indexBytes(t *testing.T, evs []event.Event) float64 {
	t.Helper()
	cfg := testenv.ES(t)
	cfg.Replicas = "0"
	ctx := testenv.Context(t, 10*time.Minute)
	es, err := esstore.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := es.InstallTemplate(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(evs); i += 1000 {
		if created, _, err := testenv.BulkCreate(ctx, es, evs[i:min(i+1000, len(evs))]); err != nil || created != min(1000, len(evs)-i) {
			t.Fatalf("bulk: %d created, %v", created, err)
		}
	}
	index := cfg.URLs[0] + "/" + es.IndexFor(evs[0].Timestamp)
	esPost(t, ctx, index+"/_forcemerge?max_num_segments=1", nil)
	esPost(t, ctx, index+"/_refresh", nil)
	var stats struct {
		All struct {
			Primaries struct {
				Docs  struct{ Count int64 } `json:"docs"`
				Store struct {
					SizeInBytes int64 `json:"size_in_bytes"`
				} `json:"store"`
			} `json:"primaries"`
		} `json:"_all"`
	}
	esPost(t, ctx, index+"/_stats/docs,store", &stats)
	if p := stats.All.Primaries; p.Docs.Count != int64(len(evs)) {
		t.Fatalf("index stats: %d documents, want %d", p.Docs.Count, len(evs))
	}
	return float64(stats.All.Primaries.Store.SizeInBytes) / float64(len(evs))
}

// archiveBytes archives evs through the archive's own write path (pgstore: the migrations, the
// day partition created on demand, COPY through the staging table) into a fresh schema whose
// payload column uses compression, and returns the day partition's bytes on disk per event.
func archiveBytes(t *testing.T, ctx context.Context, compression string, evs []event.Event) float64 {
	t.Helper()
	pgCfg := testenv.PG(t)
	pg := testenv.Archive(t, pgCfg, pgstore.Options{ApplicationName: "spillway-test-sizing"})
	db := testenv.DB(t, pgCfg)
	if _, err := db.Exec(ctx, "ALTER TABLE events ALTER COLUMN payload SET COMPRESSION "+compression); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(evs); i += 5000 {
		rows := make([]event.Event, 0, 5000)
		for _, e := range evs[i:min(i+5000, len(evs))] {
			rows = append(rows, event.Event{ID: e.ID, ClientID: e.ClientID, Type: e.Type, Timestamp: e.Timestamp, IngestedAt: e.IngestedAt, Payload: e.Payload})
		}
		if res, err := pg.CopyEvents(ctx, pgstore.OriginBackfill, rows); err != nil || res.Inserted != int64(len(rows)) {
			t.Fatalf("archive: %+v %v", res, err)
		}
	}
	part := pgx.Identifier{pgstore.PartitionName(evs[0].Timestamp)}.Sanitize()
	if _, err := db.Exec(ctx, "VACUUM (ANALYZE) "+part); err != nil {
		t.Fatal(err)
	}
	var size int64
	var method string
	if err := db.QueryRow(ctx, "SELECT pg_total_relation_size($1::regclass), coalesce(max(pg_column_compression(payload)), 'none') FROM "+part,
		part).Scan(&size, &method); err != nil {
		t.Fatal(err)
	}
	// PostgreSQL compresses a value only when its row exceeds TOAST_TUPLE_THRESHOLD (~2 KB):
	// rows of small events are stored as they are, whatever the column's compression.
	if method != compression && !(method == "none" && apiBytes(evs) < 2000) {
		t.Fatalf("payloads stored with %q compression, want %s", method, compression)
	}
	return float64(size) / float64(len(evs))
}

// checkFigure fails when a measurement is off the documented figure by more than the tolerance.
func checkFigure(t *testing.T, name string, got float64, documented int) {
	t.Helper()
	if d := got/float64(documented) - 1; d > sizingTolerance || d < -sizingTolerance {
		t.Errorf("%s: measured %.0f bytes, documented %d (%+.0f%%): update the constant and docs/heroku.md", name, got, documented, 100*d)
	}
}

func esPost(t *testing.T, ctx context.Context, u string, out any) {
	t.Helper()
	method := http.MethodPost
	if out != nil {
		method = http.MethodGet
	}
	req, _ := http.NewRequestWithContext(ctx, method, u, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, u, res.StatusCode, b)
	}
	if out != nil {
		if err := json.NewDecoder(bytes.NewReader(b)).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
}
