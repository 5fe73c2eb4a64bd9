package archive

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/pgstore"
)

// fakeIndices lists a fixed set of daily indices.
type fakeIndices []event.DailyIndex

func (f fakeIndices) Indices(context.Context) ([]event.DailyIndex, error) { return f, nil }
func (f fakeIndices) DeleteIndex(context.Context, string) error {
	return errors.New("unexpected delete")
}

func (f fakeIndices) LogDrop(context.Context, event.Drop) error {
	return errors.New("unexpected log")
}
func (f fakeIndices) Drops(context.Context) ([]event.Drop, error) { return nil, nil }
func (f fakeIndices) DroppedThrough(context.Context) (time.Time, bool, error) {
	return time.Time{}, false, nil
}

// fakeBoundary is a fixed cold boundary (zero: none recorded).
type fakeBoundary time.Time

func (b fakeBoundary) ColdBoundary(context.Context, string) (time.Time, bool, error) {
	return time.Time(b), !time.Time(b).IsZero(), nil
}
func (b fakeBoundary) AdvanceColdBoundary(context.Context, string, time.Time) (time.Time, error) {
	return time.Time{}, errors.New("unexpected advance")
}

// Prune drops a day partition only past the horizon, below the cold boundary and with no
// Elasticsearch index; it says why it keeps the others, and never touches days inside the horizon.
func TestPruneEligibility(t *testing.T) {
	now := time.Date(2026, 6, 30, 15, 0, 0, 0, time.UTC)
	d := func(n int) time.Time { return now.Truncate(24*time.Hour).AddDate(0, 0, -n) }
	parts := func() []pgstore.Partition {
		var out []pgstore.Partition
		for n := 40; n >= 0; n -= 5 { // days −40, −35, ..., 0
			out = append(out, pgstore.Partition{Name: pgstore.PartitionName(d(n)), Day: d(n), Rows: 10, Bytes: 1 << 20})
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		boundary time.Time
		inES     []int
		apply    bool
		want     string // action of days −40, −35, −30, −25 (the ones past a 21-day horizon)
		dropped  int
	}{
		{"no boundary", time.Time{}, nil, true, "kept kept kept kept", 0},
		{"listing", d(28), nil, false, "drop drop drop kept", 0},
		{"applied", d(28), nil, true, "dropped dropped dropped kept", 3},
		{"index still in Elasticsearch", d(28), []int{35}, true, "dropped kept dropped kept", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pg := newFakePG()
			pg.parts = parts()
			var idx fakeIndices
			for _, n := range tc.inES {
				idx = append(idx, event.DailyIndex{Name: "ev-" + d(n).Format("2006.01.02"), Day: d(n)})
			}
			a := New(newFakeES(), pg, Options{Config: testConfig(), Now: func() time.Time { return now },
				Indices: idx, Boundary: fakeBoundary(tc.boundary)})
			rep, err := a.Prune(context.Background(), PruneRequest{OlderThan: 21 * 24 * time.Hour, Apply: tc.apply})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range rep.Partitions {
				got = append(got, p.Action)
				if p.Action == PruneKept && p.Reason == "" {
					t.Errorf("%s kept without a reason", p.Partition)
				}
			}
			if strings.Join(got, " ") != tc.want || len(pg.dropped) != tc.dropped {
				t.Fatalf("actions %v (dropped %v), want %s", got, pg.dropped, tc.want)
			}
			if !rep.Horizon.Equal(d(21)) {
				t.Fatalf("horizon %s", rep.Horizon)
			}
		})
	}
}
