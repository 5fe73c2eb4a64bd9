package main

import (
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/loadgen"
)

func round(p99, searchCores float64, res loadgen.StreamResult) streamRound {
	res.Latency = loadgen.Percentiles{N: 1000, P50: p99 / 2, P99: p99, P999: p99 + 10}
	return streamRound{Acked: 1000, Result: res, CPU: CPUCores{"search": searchCores, "elasticsearch": 0.5}}
}

// S9's row: medians of the rounds, the ratio read "higher is better" (the 500 ms poll's p99 ÷
// the configured one's), search's cores against the baseline's in the notes, and the target
// needs the p99, exactly-once delivery in every round of both configurations and 1,000 streams.
func TestS9Row(t *testing.T) {
	sp := []streamRound{round(200, 0.05, loadgen.StreamResult{}), round(240, 0.06, loadgen.StreamResult{}), round(900, 0.05, loadgen.StreamResult{})}
	base := []streamRound{round(500, 0.05, loadgen.StreamResult{}), round(600, 0.06, loadgen.StreamResult{}), round(480, 0.05, loadgen.StreamResult{})}
	s := s9Row(1000, 30*time.Second, sp, base, "its default")
	if s.Ratio == nil || *s.Ratio != 500.0/240 || s.Met == nil || !*s.Met {
		t.Fatalf("ratio %v, met %v", s.Ratio, s.Met)
	}
	for _, want := range []string{"1,000 streams", "p99 240 ", "p99 by round: 200, 240, 900", "search 0.05 cores", "all 3,000 acknowledged events delivered exactly once"} {
		if !strings.Contains(s.Measured, want) {
			t.Errorf("measured lacks %q: %s", want, s.Measured)
		}
	}
	if !strings.Contains(s.Baseline, "search.stream_poll 500ms") || !strings.Contains(s.Baseline, "p99 500 ") {
		t.Errorf("baseline: %s", s.Baseline)
	}
	if !strings.Contains(s.Notes, "search's cores at the configured poll are 1.00 × those at 500 ms") {
		t.Errorf("notes: %s", s.Notes)
	}

	for name, tc := range map[string]struct {
		n        int
		sp, base []streamRound
	}{
		"slow":             {1000, []streamRound{round(260, 0.05, loadgen.StreamResult{})}, base},
		"fewer streams":    {100, sp, base},
		"a duplicate":      {1000, append(sp[:2:2], round(200, 0.05, loadgen.StreamResult{Duplicates: 1})), base},
		"baseline missed":  {1000, sp, append(base[:2:2], round(500, 0.05, loadgen.StreamResult{Missing: 1}))},
		"a stream dropped": {1000, []streamRound{round(200, 0.05, loadgen.StreamResult{Ended: 1})}, base},
	} {
		if s := s9Row(tc.n, time.Second, tc.sp, tc.base, "100ms"); s.Met == nil || *s.Met {
			t.Errorf("%s: met %v: %s", name, s.Met, s.Measured)
		}
	}
	if s := s9Row(1000, time.Second, sp[:2:2], base, "100ms"); !strings.Contains(s.Measured, "search.stream_poll 100ms") {
		t.Errorf("the poll is named: %s", s.Measured)
	}
	bad := s9Row(1000, time.Second, []streamRound{round(200, 0.05, loadgen.StreamResult{Missing: 2, Duplicates: 1})}, nil, "100ms")
	if !strings.Contains(bad.Measured, "2 never delivered, 1 delivered twice") || bad.Ratio != nil || *bad.Met {
		t.Errorf("a failed check is spelled out: %+v", bad)
	}
	summary := s9Summary(1000, sp, base)
	if summary["spillway"].(map[string]any)["search_cores"] != 0.05 || summary["baseline"].(map[string]any)["exactly_once"] != true {
		t.Errorf("summary %v", summary)
	}
}
