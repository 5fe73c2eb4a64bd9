package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
)

// Report is one benchmark run: the machine, the baselines and the scenarios, all measured in
// the same invocation so that the ratios between them mean something on a shared machine.
type Report struct {
	// Version is the report format: 2 reads every ratio the same way (above 1: Spillway did
	// better than its baseline) and gives S3 none; 0 (files written before it) had S3's ratio
	// as offered load ÷ raw ceiling and S8's as Spillway's p99 ÷ the naive design's.
	Version int     `json:"version,omitempty"`
	Date    string  `json:"date"`
	Command string  `json:"command"`
	Quick   bool    `json:"quick"`
	Scale   string  `json:"scale"` // what --quick scaled down, in words
	Elapsed float64 `json:"elapsed_seconds"`
	Machine Machine `json:"machine"`
	// Settings are the configuration the services ran with (ingest tuning, pool sizes, ...).
	Settings map[string]string `json:"settings"`

	RawES     []RawBulkResult `json:"raw_es_sweep"`
	RawESBest *RawBulkResult  `json:"raw_es_best,omitempty"`
	RawCopy   *RawCopyResult  `json:"raw_copy,omitempty"`

	Scenarios []Scenario `json:"scenarios"`
	// Sweep is latency versus offered rate for Spillway and the naive design behind the 5 ms
	// round trip (S8 and the plots).
	Sweep []SweepPoint `json:"sweep"`
	// Runs holds every raw load-generator result by name, for whoever wants more than the table.
	Runs map[string]any `json:"runs"`
	// Tuning compares ingest settings (cmd/bench --only tune).
	Tuning *Tuning `json:"tuning,omitempty"`
	// Errors lists scenarios that could not be run, with why.
	Errors []string `json:"errors,omitempty"`
}

// Machine describes where the run happened.
type Machine struct {
	Cores         int     `json:"cores"`
	MemoryGiB     float64 `json:"memory_gib"`
	LoadBefore    string  `json:"load_average_before"` // /proc/loadavg: 1, 5, 15 minutes
	LoadAfter     string  `json:"load_average_after"`
	Elasticsearch string  `json:"elasticsearch"`
	PostgreSQL    string  `json:"postgresql"`
	Go            string  `json:"go"`
	Kernel        string  `json:"kernel"`
}

// Scenario is one row of the results table.
type Scenario struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Target   string `json:"target"`
	Measured string `json:"measured"`
	Baseline string `json:"baseline,omitempty"`
	// Ratio compares Spillway with its baseline so that above 1 is better for Spillway:
	// throughput ÷ the baseline's, or the baseline's latency ÷ Spillway's.
	Ratio *float64 `json:"ratio,omitempty"`
	Met   *bool    `json:"met,omitempty"` // nil: not measured
	Notes string   `json:"notes,omitempty"`
}

// SweepPoint is one open-loop run at one offered rate.
type SweepPoint struct {
	System    string  `json:"system"` // "spillway" or "naive"
	Offered   float64 `json:"offered_events_per_second"`
	Achieved  float64 `json:"achieved_events_per_second"`
	P50       float64 `json:"p50_ms"`
	P90       float64 `json:"p90_ms"`
	P99       float64 `json:"p99_ms"`
	P999      float64 `json:"p99_9_ms"`
	Max       float64 `json:"max_ms"`
	Requests  int64   `json:"requests"`
	Errors    int64   `json:"errors"` // requests not answered 201
	Unsent    int64   `json:"unsent"`
	Saturated bool    `json:"saturated"`
	// PGConns is the most connections the naive server's pool held open at once
	// (pg_stat_activity), whether busy or idle.
	PGConns int `json:"pg_connections_max,omitempty"`
}

// Tuning is an interleaved comparison of ingest settings on the ingest workloads.
type Tuning struct {
	Rounds    int       `json:"rounds"`
	Seconds   float64   `json:"seconds_per_run"`
	Workloads []string  `json:"workloads"`
	Rows      []TuneRow `json:"rows"`
}

// TuneRow is one configuration's medians (and every round's figure) per workload.
type TuneRow struct {
	Config  string      `json:"config"`
	Medians []float64   `json:"medians"`
	Rounds  [][]float64 `json:"rounds"`
}

// Saturated reports whether a run at an offered rate did not keep up: less than 95 % of the
// offered events acknowledged, more than 1 % of requests failed, or p99 above one second.
func Saturated(offered, achieved float64, requests, errors int64, p99 float64) bool {
	return achieved < 0.95*offered || (requests > 0 && float64(errors) > 0.01*float64(requests)) || p99 > 1000
}

// SaturatesAt is the lowest swept rate of a system from which every higher swept rate is
// saturated too (0: it kept up at the highest rate). A single saturated point below a good one
// is a transient of the shared machine, not the system's limit.
func SaturatesAt(sweep []SweepPoint, system string) float64 {
	var pts []SweepPoint
	for _, p := range sweep {
		if p.System == system {
			pts = append(pts, p)
		}
	}
	sort.Slice(pts, func(i, j int) bool { return pts[i].Offered < pts[j].Offered })
	at := 0.0
	for i := len(pts) - 1; i >= 0 && pts[i].Saturated; i-- {
		at = pts[i].Offered
	}
	return at
}

// Ptr returns a pointer to v (for Ratio and Met).
func Ptr[T any](v T) *T { return &v }

// WriteJSON writes the report to path.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Markdown renders the results section: the header, the scenario table, the baselines and the
// sweep. plots are the image paths as the document should link them.
func (r *Report) Markdown(plots []string) string {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "Run of %s, `%s`, took %s.\n\n", r.Date, r.Command, duration(r.Elapsed))
	if r.Quick {
		fmt.Fprintf(&b, "> **QUICK RUN — scaled down, not the benchmark.** %s\n\n", r.Scale)
	}
	fmt.Fprintf(&b, "Machine: %d cores, %.1f GiB memory, %s; load average (1/5/15 min) %s before, %s after. "+
		"Elasticsearch %s, PostgreSQL %s, Go %s.\n\n",
		m.Cores, m.MemoryGiB, m.Kernel, m.LoadBefore, m.LoadAfter, m.Elasticsearch, m.PostgreSQL, m.Go)

	b.WriteString("| # | scenario | measured | baseline (same run) | ratio | target | met |\n|---|---|---|---|---|---|---|\n")
	for _, s := range r.Scenarios {
		ratio := "—"
		if s.Ratio != nil {
			ratio = fmt.Sprintf("%.2f×", *s.Ratio)
		}
		met := "not measured"
		if s.Met != nil {
			met = map[bool]string{true: "yes", false: "**no**"}[*s.Met]
		}
		base := s.Baseline
		if base == "" {
			base = "—"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", s.ID, cell(s.Name), cell(s.Measured), cell(base), ratio, cell(s.Target), met)
	}
	b.WriteString("\n*ratio*: Spillway against the baseline of the same run, read the same way in every row — higher is better " +
		"for Spillway: its throughput ÷ the baseline's (S1, S2, S6), the baseline's p99 ÷ Spillway's (S8; S9: delivery p99).\n")
	for _, s := range r.Scenarios {
		if s.Notes != "" {
			fmt.Fprintf(&b, "\n- **%s**: %s", s.ID, s.Notes)
		}
	}
	b.WriteString("\n")
	if len(r.Errors) > 0 {
		b.WriteString("\nNot measured:\n\n")
		for _, e := range r.Errors {
			fmt.Fprintf(&b, "- %s\n", e)
		}
	}

	if len(r.RawES) > 0 {
		b.WriteString("\n**Raw Elasticsearch `_bulk`** (1 KB documents shaped like ingest's, `create` with ids, default durability):\n\n")
		b.WriteString("| bulk size | concurrent requests | docs/s | failed items |\n|---|---|---|---|\n")
		for _, x := range r.RawES {
			best := ""
			if r.RawESBest != nil && x == *r.RawESBest {
				best = " (best)"
			}
			fmt.Fprintf(&b, "| %d | %d | %s%s | %d |\n", x.BulkSize, x.Concurrency, num(x.DocsPerSecond), best, x.FailedItems)
		}
	}
	if r.RawCopy != nil {
		fmt.Fprintf(&b, "\n**Raw PostgreSQL `COPY`**: %s rows of ~1 KB into the indexed events table, one connection, %s rows per statement: %s rows/s.\n",
			num(float64(r.RawCopy.Rows)), num(float64(r.RawCopy.Batch)), num(r.RawCopy.RowsPerSecond))
	}
	if len(r.Sweep) > 0 {
		b.WriteString("\n**Latency versus offered rate, 5 ms round trip to the stores** (single-event requests of ~5 KB, open loop, latency from the intended send time):\n\n")
		b.WriteString("| system | offered ev/s | acknowledged ev/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | failed requests | pooled PostgreSQL connections open (max) | saturated |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
		pts := append([]SweepPoint(nil), r.Sweep...)
		sort.SliceStable(pts, func(i, j int) bool {
			if pts[i].System != pts[j].System {
				return pts[i].System > pts[j].System
			}
			return pts[i].Offered < pts[j].Offered
		})
		for _, p := range pts {
			conns := "—"
			if p.PGConns > 0 {
				conns = fmt.Sprint(p.PGConns)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %d | %s | %s |\n", p.System, num(p.Offered), num(p.Achieved),
				ms(p.P50), ms(p.P90), ms(p.P99), ms(p.P999), ms(p.Max), p.Errors+p.Unsent, conns, map[bool]string{true: "**yes**", false: "no"}[p.Saturated])
		}
	}
	if t := r.Tuning; t != nil {
		b.WriteString("\n" + t.Markdown())
	}
	if len(plots) > 0 {
		b.WriteString("\n")
		for _, p := range plots {
			fmt.Fprintf(&b, "![%s](%s)\n", strings.TrimSuffix(p[strings.LastIndex(p, "/")+1:], ".png"), p)
		}
	}
	if len(r.Settings) > 0 {
		keys := make([]string, 0, len(r.Settings))
		for k := range r.Settings {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString("\nSettings of this run: ")
		for i, k := range keys {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "`%s=%s`", k, r.Settings[k])
		}
		b.WriteString(".\n")
	}
	return b.String()
}

// Markdown renders the comparison of ingest settings: a table of medians, every round's figure
// in brackets.
func (t *Tuning) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "**Ingest settings compared** (each configuration a separate ingest process, visited in rotating order, %d rounds of %.0f s; medians, rounds in brackets):\n\n", t.Rounds, t.Seconds)
	b.WriteString("| configuration |")
	for _, w := range t.Workloads {
		fmt.Fprintf(&b, " %s |", w)
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(t.Workloads)) + "\n")
	for _, row := range t.Rows {
		fmt.Fprintf(&b, "| %s |", row.Config)
		for w, m := range row.Medians {
			var rs []string
			for _, x := range row.Rounds[w] {
				rs = append(rs, num(x))
			}
			fmt.Fprintf(&b, " %s (%s) |", num(m), strings.Join(rs, ", "))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// Markers delimit the generated results of BENCHMARKS.md; the rest of the file is written by
// hand, but for the other generated sections (SpliceSection).
const (
	BeginMarker = "<!-- bench:results:begin (generated by scripts/bench.sh; edits inside are overwritten) -->"
	EndMarker   = "<!-- bench:results:end -->"
)

// Splice replaces the generated results section of doc with section, or appends it with its
// markers when doc has none.
func Splice(doc []byte, section string) []byte { return SpliceSection(doc, "results", section) }

// SpliceSection replaces the generated section called name (between its begin and end markers)
// with section, or appends it with its markers when doc has none.
func SpliceSection(doc []byte, name, section string) []byte {
	open := "<!-- bench:" + name + ":begin (generated by scripts/bench.sh; edits inside are overwritten) -->"
	closing := "<!-- bench:" + name + ":end -->"
	begin := bytes.Index(doc, []byte(open))
	end := bytes.Index(doc, []byte(closing))
	block := open + "\n" + strings.TrimRight(section, "\n") + "\n" + closing
	if begin < 0 || end < begin {
		out := bytes.TrimRight(doc, "\n")
		if len(out) > 0 {
			out = append(out, "\n\n"...)
		}
		return append(append(out, block...), '\n')
	}
	var out []byte
	out = append(out, doc[:begin]...)
	out = append(out, block...)
	return append(out, doc[end+len(closing):]...)
}

func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// num formats a count with thousands separators.
func num(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "—"
	}
	s := fmt.Sprintf("%.0f", v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i, c := range []byte(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, c)
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// Num formats a count with thousands separators, for callers building Measured strings.
func Num(v float64) string { return num(v) }

func ms(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func duration(sec float64) string {
	if sec < 120 {
		return fmt.Sprintf("%.0f s", sec)
	}
	return fmt.Sprintf("%.1f min", sec/60)
}
