package bench_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/spillway/spillway/pkg/bench"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/pgstore"
	"github.com/spillway/spillway/pkg/testenv"
)

func storageStores(t testing.TB) bench.StorageStores {
	t.Helper()
	ctx := testenv.Context(t, time.Minute)
	esCfg := testenv.ES(t)
	es, err := esstore.New(esCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := es.InstallTemplate(ctx); err != nil {
		t.Fatal(err)
	}
	st := bench.StorageStores{ES: es, ESURL: esCfg.URLs[0], PG: map[string]*pgstore.Store{}}
	for _, comp := range []string{"pglz", "lz4"} {
		pg, err := pgstore.Open(ctx, testenv.PG(t), pgstore.Options{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pg.Close)
		if err := pg.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		st.PG[comp] = pg
	}
	return st
}

func TestRealisticPayloadsAreJSONOfTheTargetSize(t *testing.T) {
	r := bench.NewRealistic(1, 5000)
	var total int
	for i := range 200 {
		p := r.Payload(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
		var v map[string]any
		if err := json.Unmarshal(p, &v); err != nil {
			t.Fatalf("payload %d: %v\n%s", i, err, p)
		}
		if len(p) < 3000 || len(p) > 7000 {
			t.Fatalf("payload %d: %d bytes, want about 5,000", i, len(p))
		}
		total += len(p)
	}
	if avg := total / 200; avg < 4500 || avg > 5500 {
		t.Fatalf("average %d bytes, want about 5,000", avg)
	}
	if string(bench.NewRealistic(7, 5000).Payload(time.Unix(0, 0))) != string(bench.NewRealistic(7, 5000).Payload(time.Unix(0, 0))) {
		t.Fatal("not deterministic for a seed")
	}
}

// The measurement writes every event to every store and reports sizes that add up; realistic
// JSON is compressed (its TOAST is smaller than its text) and random letters much less so.
func TestMeasureStorage(t *testing.T) {
	st := storageStores(t)
	ctx := testenv.Context(t, 2*time.Minute)
	r := bench.NewRealistic(3, 5000)
	res, err := bench.MeasureStorage(ctx, st, "realistic", 2000, func(_ int, at time.Time) []byte { return r.Payload(at) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	for comp, f := range res.PG {
		if math.Abs(f.Total-(f.Heap+f.Toast+f.Indexes)) > 1e-6 || f.Total <= 0 || f.Toast >= res.PayloadBytes {
			t.Fatalf("%s: %+v (payload %0.f bytes): parts do not add up, or realistic JSON was not compressed", comp, f, res.PayloadBytes)
		}
	}
	if res.ESBytes <= 0 || res.RawJSONBytes <= res.PayloadBytes {
		t.Fatalf("result %+v", res)
	}
}

// BenchmarkStorage measures bytes on disk per event (SPILLWAY_STORAGE_EVENTS, default 50,000;
// SPILLWAY_STORAGE_OUT writes the JSON) for realistic payloads of ~5 KB and, for comparison, the
// load generator's random letters. Not a timing: the figures are sizes.
func BenchmarkStorage(b *testing.B) {
	n := 50000
	if v, err := strconv.Atoi(os.Getenv("SPILLWAY_STORAGE_EVENTS")); err == nil && v > 0 {
		n = v
	}
	var out []*bench.StorageResult
	for b.Loop() {
		out = out[:0]
		for _, kind := range []string{"realistic", "letters"} {
			st := storageStores(b)
			r := bench.NewRealistic(42, 5000)
			letters := bench.NewDocShape(5000, 1000)
			gen := func(i int, at time.Time) []byte {
				if kind == "letters" {
					return letters.Payload(int64(i))
				}
				return r.Payload(at)
			}
			res, err := bench.MeasureStorage(context.Background(), st, kind, n, gen)
			if err != nil {
				b.Fatal(err)
			}
			out = append(out, res)
			b.ReportMetric(res.PG["lz4"].Total, kind+"-pg-lz4-B/event")
			b.ReportMetric(res.PG["pglz"].Total, kind+"-pg-pglz-B/event")
			b.ReportMetric(res.ESBytes, kind+"-es-B/event")
			b.ReportMetric(res.RawJSONBytes, kind+"-raw-B/event")
		}
	}
	if path := os.Getenv("SPILLWAY_STORAGE_OUT"); path != "" {
		body, _ := json.MarshalIndent(map[string]any{"measured_at": time.Now().UTC().Format(time.RFC3339),
			"command": fmt.Sprintf("SPILLWAY_STORAGE_EVENTS=%d go test -run - -bench BenchmarkStorage -benchtime 1x ./pkg/bench/", n), "results": out}, "", "  ")
		if err := os.WriteFile(path, append(body, '\n'), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}
