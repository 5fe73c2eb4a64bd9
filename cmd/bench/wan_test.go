package main

import (
	"strings"
	"testing"
)

// S8's rows: medians of the rounds, the ratio read "higher is better for Spillway" (the naive
// design's p99 ÷ Spillway's), and issue 15's target: ratio ≥ 1 and no failed Spillway request.
func TestS8Row(t *testing.T) {
	sp := &s8Runs{p50: []float64{10, 12, 11}, p99: []float64{40, 90, 50}, p999: []float64{60, 120, 70}, eps: []float64{1999, 2000, 1998}}
	nv := &s8Runs{p50: []float64{8, 9, 7}, p99: []float64{100, 60, 55}, p999: []float64{150, 90, 80}, eps: []float64{2000, 2000, 1999}, conns: 20}
	s := s8Row(s8Pair{id: "S8d", rate: 2000, spillway: "spillway", naive: "naive-20"}, sp, nv, 20)
	if s.ID != "S8d" || s.Ratio == nil || *s.Ratio != 60.0/50 || s.Met == nil || !*s.Met {
		t.Fatalf("%+v", s)
	}
	for _, want := range []string{"Spillway: p50 11.0 / p99 50.0 ", "p99 by round: 40, 90, 50", "1,999 events/s acknowledged, 0 failed in all"} {
		if !strings.Contains(s.Measured, want) {
			t.Errorf("measured lacks %q: %s", want, s.Measured)
		}
	}
	if !strings.HasPrefix(s.Baseline, "naive (pool 20, at most 20 connections open): p50 8.0 / p99 60.0 ") {
		t.Errorf("baseline: %s", s.Baseline)
	}
	slower := *sp
	slower.p99 = []float64{70, 90, 65}
	if s := s8Row(s8Pair{id: "S8b"}, &slower, nv, 500); *s.Met || *s.Ratio >= 1 {
		t.Errorf("Spillway's p99 above the naive design's is not met: %v", *s.Ratio)
	}
	failing := *sp
	failing.failed = 1
	if s := s8Row(s8Pair{id: "S8b"}, &failing, nv, 500); *s.Met {
		t.Error("a failed Spillway request is not met")
	}
	if s := s8Row(s8Pair{id: "S8b"}, &s8Runs{p99: []float64{0}}, nv, 500); s.Ratio != nil || *s.Met {
		t.Error("no Spillway p99, no ratio")
	}
	for _, p := range s8Pairs {
		if !s8Rate(p.rate) || !strings.HasPrefix(p.spillway, "spillway") || !strings.HasPrefix(p.naive, "naive") {
			t.Errorf("pair %+v", p)
		}
	}
}
