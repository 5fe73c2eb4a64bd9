package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spillway/spillway/internal/testenv"
)

func testutilGauge(g prometheus.Gauge) float64 { return testutil.ToFloat64(g) }

func TestStatusReportsPositionsLagAndErrors(t *testing.T) {
	es, pg := newFakeES(), newFakePG()
	now := time.Date(2026, 4, 2, 12, 0, 0, 0, time.UTC)
	for i := 0; i < 5; i++ {
		es.add("ev-2026.04.01", 0, doc(fmt.Sprintf("a%d", i), now.Add(-time.Duration(10-i)*time.Minute)), true)
	}
	archiveAll(es, pg)
	es.add("ev-2026.04.01", 0, doc("b", now.Add(-3*time.Minute)), true)
	es.add("ev-2026.04.02", 0, doc("c", now.Add(-2*time.Minute)), true)
	es.mu.Lock()
	for _, s := range es.shards {
		s.visible = int64(len(s.docs)) - 1
	}
	es.mu.Unlock()
	_ = pg.RecordError(context.Background(), "archive: boom", now)
	a := New(es, pg, Options{Config: testConfig(), Now: func() time.Time { return now }})
	rep, err := a.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.RowsArchived != 5 || rep.BehindOps != 2 || rep.LagSeconds != 180 || rep.LastError != "archive: boom" || len(rep.Shards) != 2 || rep.Leader != nil {
		t.Fatalf("%+v", rep)
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back["lag_seconds"].(float64) != 180 || back["rows_archived"].(float64) != 5 {
		t.Fatalf("json %s: %v", js.String(), err)
	}
	var tbl bytes.Buffer
	if err := rep.WriteTable(&tbl); err != nil || !strings.Contains(tbl.String(), "ev-2026.04.02") || !strings.Contains(tbl.String(), "3m0s") {
		t.Fatalf("table:\n%s", tbl.String())
	}
}

type countProgress struct {
	total, done atomic.Int64
	finished    atomic.Bool
}

func (c *countProgress) Start(total int64) { c.total.Store(total) }
func (c *countProgress) Add(n int)         { c.done.Add(int64(n)) }
func (c *countProgress) Finish()           { c.finished.Store(true) }

func TestBackfillCopiesTheRangeOnce(t *testing.T) {
	es, pg := newFakeES(), newFakePG()
	for i := 0; i < 100; i++ {
		es.add("ev-2026.04.01", i%3, doc(fmt.Sprintf("a%03d", i), day.Add(time.Duration(i)*time.Minute)), true)
	}
	es.mu.Lock()
	for _, s := range es.shards {
		s.visible = int64(len(s.docs)) - 1
	}
	es.mu.Unlock()
	a := New(es, pg, Options{Config: testConfig(), Writers: 3})
	p := &countProgress{}
	rep, err := a.Backfill(context.Background(), day.Add(10*time.Minute), day.Add(60*time.Minute), p)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Total != 50 || rep.Read != 50 || rep.Inserted != 50 || pg.count() != 50 || p.done.Load() != 50 || p.total.Load() != 50 || !p.finished.Load() {
		t.Fatalf("%+v, %d rows, progress %d/%d", rep, pg.count(), p.done.Load(), p.total.Load())
	}
	rep, err = a.Backfill(context.Background(), day, day.Add(24*time.Hour), nil)
	if err != nil || rep.Read != 100 || rep.Inserted != 50 || pg.count() != 100 || pg.backfilled != 100 {
		t.Fatalf("second backfill: %+v %v", rep, err)
	}
	if _, err := a.Backfill(context.Background(), day, day, nil); err == nil {
		t.Fatal("empty range accepted")
	}
}

func TestLogProgressLogs(t *testing.T) {
	mu := &testenv.SyncBuffer{}
	p := NewLogProgress(newJSONLogger(mu), "backfill", 5*time.Millisecond)
	p.Start(100)
	p.Add(40)
	time.Sleep(20 * time.Millisecond)
	p.Add(60)
	p.Finish()
	out := mu.String()
	if !strings.Contains(out, `"msg":"backfill progress"`) || !strings.Contains(out, `"msg":"backfill finished"`) || !strings.Contains(out, `"rows":100`) {
		t.Fatalf("log:\n%s", out)
	}
}
