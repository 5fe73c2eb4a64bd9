package esstore_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/event"
)

func TestIndicesListAndDeleteOnlyDailyIndices(t *testing.T) {
	cfg := testenv.ES(t)
	ctx := testenv.Context(t, time.Minute)
	s, err := esstore.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.InstallTemplate(ctx); err != nil {
		t.Fatal(err)
	}
	d1 := time.Date(2026, 4, 2, 10, 0, 0, 0, time.UTC)
	d0 := d1.AddDate(0, 0, -1)
	for i, ts := range []time.Time{d1, d0, d1} {
		if _, err := testenv.Put(ctx, s, event.Event{ID: string(rune('a' + i)), ClientID: "c", Timestamp: ts, IngestedAt: ts}); err != nil {
			t.Fatal(err)
		}
	}
	// A non-daily index under the pattern is not an event index.
	req, _ := http.NewRequest(http.MethodPut, cfg.URLs[0]+"/"+cfg.IndexPrefix+"-scratch", nil)
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != 200 {
		t.Fatalf("create scratch index: %v %v", res, err)
	}
	idx, err := s.Indices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(idx) != 2 || idx[0].Name != s.IndexFor(d0) || !idx[0].Day.Equal(d0.Truncate(24*time.Hour)) || idx[1].Docs != 2 ||
		!idx[0].Open || idx[0].Health == "red" || idx[0].UUID == "" || idx[0].Primaries != 1 {
		t.Fatalf("indices %+v", idx)
	}
	for _, bad := range []string{s.Pattern(), cfg.IndexPrefix + "-scratch", "other-2026.04.01", s.IndexFor(d0) + ",x", ""} {
		if err := s.DeleteIndex(ctx, bad); err == nil {
			t.Errorf("DeleteIndex(%q) accepted", bad)
		}
	}
	if err := s.DeleteIndex(ctx, idx[0].Name); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteIndex(ctx, idx[0].Name); err != nil {
		t.Fatalf("deleting a gone index: %v", err)
	}
	if idx, err = s.Indices(ctx); err != nil || len(idx) != 1 || idx[0].Name != s.IndexFor(d1) {
		t.Fatalf("after delete: %+v %v", idx, err)
	}
}
