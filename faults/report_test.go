package faults

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// What the faults record is what RELIABILITY.md shows: a row per fault (PostgreSQL counted only
// where the archiver took part, a failed fault marked), then each fault's description and notes.
func TestRecordReadRender(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.jsonl")
	t.Setenv(ReportEnv, path)
	pgRows := int64(6560)
	for _, r := range []Result{
		{Fault: "PostgreSQL unavailable", Test: "TestFaultPostgresUnavailable", Form: "short", Injected: "PostgreSQL stopped for 8s.",
			Sent: 6560, Acknowledged: 6560, StoredES: 6560, StoredPG: &pgRows, Passed: true, Seconds: 19.4,
			Notes: []string{"lag from 0.1 s to 7.7 s", "caught up 2.8 s after PostgreSQL was back"}},
		{Fault: "reply lost after the write", Test: "TestFaultReplyLost", Form: "full", Injected: "Proxies lose one reply in 4.",
			Sent: 2510, Acknowledged: 1890, StoredES: 1890, Duplicated: 1, Passed: false, Seconds: 11,
			Notes: []string{"480 events found already stored by a resent attempt"}},
	} {
		if err := Record(r); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	results, err := ReadResults(f)
	if err != nil || len(results) != 2 {
		t.Fatalf("%d results, %v", len(results), err)
	}
	var b strings.Builder
	if err := Render(&b, Meta{Date: "2026-12-05 20:00 UTC", Machine: "2 cores", Versions: []string{"Go 1.26"},
		Command: "scripts/faults.sh", Outcome: "FAILED"}, results); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"| PostgreSQL unavailable | short | 6560 | 6560 | 6560 | 6560 | 0 | 0 | pass |",
		"| reply lost after the write | full | 2510 | 1890 | 1890 | — | 0 | 1 | **FAIL** |",
		"### PostgreSQL unavailable\n\n`TestFaultPostgresUnavailable` (short form, 19 s). PostgreSQL stopped for 8s.\n\n- lag from 0.1 s to 7.7 s\n- caught up",
		"- 480 events found already stored by a resent attempt\n",
		"- **Outcome:** FAILED", "- Go 1.26",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("missing %q in:\n%s", want, md)
		}
	}
	// Without the variable, Record writes nothing.
	t.Setenv(ReportEnv, "")
	if err := Record(Result{Fault: "x"}); err != nil {
		t.Fatal(err)
	}
}
