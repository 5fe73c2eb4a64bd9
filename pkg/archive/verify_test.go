package archive

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/pgstore"
)

// archiveAll makes the fakes look like an archiver that has passed every document.
func archiveAll(es *fakeES, pg *fakePG) {
	es.mu.Lock()
	defer es.mu.Unlock()
	pg.mu.Lock()
	defer pg.mu.Unlock()
	for _, s := range es.shards {
		s.gcp = int64(len(s.docs)) - 1
		s.visible = s.gcp
		var rows []event.Event
		for _, d := range s.docs {
			rows = append(rows, d.Event)
		}
		n := pg.insert(rows)
		pg.cps[shardKey{s.uuid, s.shard}] = &pgstore.Checkpoint{IndexUUID: s.uuid, Shard: s.shard, IndexName: s.index, SeqNo: s.gcp, Rows: n}
	}
}

func TestVerifyFindsGapsExtrasAndPending(t *testing.T) {
	es, pg := newFakeES(), newFakePG()
	// 3 hours of events on one day, 2 shards, one every 10 s.
	for i := 0; i < 3*360; i++ {
		ts := day.Add(time.Duration(i) * 10 * time.Second)
		es.add("ev-2026.04.01", i%2, doc(fmt.Sprintf("e%05d", i), ts), true)
	}
	archiveAll(es, pg)
	a := New(es, pg, Options{Config: testConfig()})
	ctx := context.Background()
	req := VerifyRequest{From: day, To: day.Add(3 * time.Hour), Bucket: time.Hour}

	rep, err := a.Verify(ctx, req)
	if err != nil || !rep.OK() || !rep.Complete() || len(rep.Buckets) != 3 || rep.Compared != 0 {
		t.Fatalf("clean: %+v %v", rep, err)
	}

	// A gap in PostgreSQL, an extra row, documents not archived yet, a row archived ahead of
	// its checkpoint.
	pg.mu.Lock()
	pg.dropID("e00100")
	pg.dropID("e00101")
	extra := event.Event{ID: "zz-extra", ClientID: "c", Timestamp: day.Add(2*time.Hour + time.Minute)}
	pg.events[keyOf(extra)] = extra
	pg.mu.Unlock()
	es.add("ev-2026.04.01", 0, doc("pending", day.Add(30*time.Minute)), true)
	es.add("ev-2026.04.01", 1, doc("ahead", day.Add(90*time.Minute)), true)
	es.mu.Lock()
	for _, s := range es.shards {
		s.visible = int64(len(s.docs)) - 1
	}
	es.mu.Unlock()
	_, _ = pg.CopyEvents(ctx, pgstore.OriginBackfill, []event.Event{doc("ahead", day.Add(90*time.Minute))})

	rep, err = a.Verify(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	// "ahead" is both pending (the archiver has not passed it) and ahead (backfilled already).
	if rep.OK() || rep.Missing != 2 || rep.Extra != 1 || rep.Pending != 2 || rep.Ahead != 1 || rep.Repaired != 0 {
		t.Fatalf("report %+v", rep)
	}
	if strings.Join(rep.MissingIDs, ",") != "e00100,e00101" || strings.Join(rep.ExtraIDs, ",") != "zz-extra" {
		t.Fatalf("ids %v %v", rep.MissingIDs, rep.ExtraIDs)
	}
	if b := rep.Buckets[0]; b.Missing != 2 || b.Pending != 1 {
		t.Fatalf("bucket 0 %+v", b)
	}
	if len(rep.Behind) != 2 || rep.Complete() {
		t.Fatalf("behind %v", rep.Behind)
	}
	var out bytes.Buffer
	if err := rep.WriteTable(&out); err != nil || !strings.Contains(out.String(), "MISMATCH") || !strings.Contains(out.String(), "e00100") {
		t.Fatalf("table:\n%s", out.String())
	}

	rep, err = a.Verify(ctx, VerifyRequest{From: req.From, To: req.To, Bucket: req.Bucket, Repair: true})
	if err != nil || rep.Missing != 2 || rep.Repaired != 2 || rep.Extra != 1 || rep.OK() {
		t.Fatalf("repair: %+v %v", rep, err)
	}
	rep, err = a.Verify(ctx, req)
	if err != nil || rep.Missing != 0 || rep.Extra != 1 {
		t.Fatalf("after repair: %+v %v", rep, err)
	}
	if pg.repaired != 2 {
		t.Fatalf("repaired counted %d", pg.repaired)
	}
}

// A row lost from PostgreSQL and an extra row in the same bucket leave the counts equal; the
// sums of the id digests differ, so the ids are compared and both are found.
func TestVerifyMissingAndExtraInOneBucketDoNotCancelOut(t *testing.T) {
	es, pg := newFakeES(), newFakePG()
	for i := 0; i < 360; i++ {
		es.add("ev-2026.04.01", 0, doc(fmt.Sprintf("e%05d", i), day.Add(time.Duration(i)*10*time.Second)), true)
	}
	archiveAll(es, pg)
	pg.mu.Lock()
	pg.dropID("e00100")
	extra := event.Event{ID: "zz-extra", ClientID: "c", Timestamp: day.Add(30 * time.Minute)}
	pg.events[keyOf(extra)] = extra
	pg.mu.Unlock()
	a := New(es, pg, Options{Config: testConfig()})
	rep, err := a.Verify(context.Background(), VerifyRequest{From: day, To: day.Add(time.Hour), Bucket: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if b := rep.Buckets[0]; b.ES != b.PG {
		t.Fatalf("the case needs equal counts: %+v", b)
	}
	if rep.OK() || rep.Missing != 1 || rep.Extra != 1 || rep.Compared != 1 ||
		strings.Join(rep.MissingIDs, ",") != "e00100" || strings.Join(rep.ExtraIDs, ",") != "zz-extra" {
		t.Fatalf("report %+v", rep)
	}
}

// A mismatching bucket too large to compare ids at once is split until the parts are small.
func TestVerifySplitsLargeBuckets(t *testing.T) {
	es, pg := newFakeES(), newFakePG()
	n := idLimit + 5000
	for i := 0; i < n; i++ {
		ts := day.Add(time.Duration(i) * 100 * time.Millisecond)
		es.add("ev-2026.04.01", 0, doc(fmt.Sprintf("e%06d", i), ts), true)
	}
	archiveAll(es, pg)
	pg.mu.Lock()
	pg.dropID("e012345")
	pg.mu.Unlock()
	a := New(es, pg, Options{Config: testConfig()})
	rep, err := a.Verify(context.Background(), VerifyRequest{From: day, To: day.Add(24 * time.Hour), Bucket: 24 * time.Hour, Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Missing != 1 || rep.Repaired != 1 || rep.MissingIDs[0] != "e012345" || !rep.OK() {
		t.Fatalf("%+v", rep)
	}
}

func TestVerifyRejectsBadRanges(t *testing.T) {
	a := New(newFakeES(), newFakePG(), Options{Config: testConfig()})
	if _, err := a.Verify(context.Background(), VerifyRequest{From: day, To: day}); err == nil {
		t.Fatal("empty range accepted")
	}
	if _, err := a.Verify(context.Background(), VerifyRequest{From: day, To: day.Add(24 * time.Hour), Bucket: time.Millisecond}); err == nil {
		t.Fatal("86 million buckets accepted")
	}
}

func TestVerifyAndRecordSetsMetricAndState(t *testing.T) {
	es, pg := newFakeES(), newFakePG()
	es.add("ev-2026.04.01", 0, doc("a", day), true)
	archiveAll(es, pg)
	pg.mu.Lock()
	pg.dropID("a")
	pg.mu.Unlock()
	m := NewMetrics(nil, nil)
	a := New(es, pg, Options{Config: testConfig(), Metrics: m})
	if _, err := a.VerifyAndRecord(context.Background(), VerifyRequest{From: day, To: day.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	st, _ := pg.State(context.Background())
	if st.LastVerify == nil || st.LastVerify.Missing != 1 {
		t.Fatalf("state %+v", st.LastVerify)
	}
	if got := gaugeValue(t, m, "missing"); got != 1 {
		t.Fatalf("mismatch metric %v", got)
	}
}

func gaugeValue(t *testing.T, m *Metrics, kind string) float64 {
	t.Helper()
	g, err := m.mismatches.GetMetricWithLabelValues(kind)
	if err != nil {
		t.Fatal(err)
	}
	return testutilGauge(g)
}
