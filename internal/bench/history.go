package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ReportVersion is the format Report.Version names for reports written now.
const ReportVersion = 2

// LoadRuns reads every stored run (*.json) of dir, oldest first (the file names are their
// UTC start times). A missing dir holds no run.
func LoadRuns(dir string) ([]*Report, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var out []*Report
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var r Report
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		out = append(out, &r)
	}
	return out, nil
}

// RunFile is the name a full run is stored under in docs/benchmarks/runs/: its start time.
func RunFile(r *Report) string {
	s := strings.NewReplacer("-", "", ":", "", " UTC", "Z", " ", "T").Replace(r.Date)
	return s + ".json"
}

// History renders every stored full run side by side, newest first: the figures each scenario
// is judged by, read from the run's raw results where the table's wording changed between
// versions, and every ratio read the same way (higher is better for Spillway).
func History(runs []*Report) string {
	var b strings.Builder
	b.WriteString("| run | load average before → after | raw `_bulk` best, docs/s | S1 ratio | S2 ratio | S3 p99 ms / events/s acknowledged of 2,000 | S4 visibility p99 ms | S5 search p99 ms | S6 rows/s (ratio to raw `COPY`) | S7 ingest RSS MB, acknowledged events lost | S8a ratio | S8b ratio | S8c / S8d / S8e / S8f ratios (pool 20; 5 ms, then 0 ms) | S9 delivery p99 ms, search cores (at the 500 ms poll) |\n")
	b.WriteString("|---|---|--:|--:|--:|---|--:|--:|---|---|--:|--:|---|---|\n")
	for i := len(runs) - 1; i >= 0; i-- {
		r := runs[i]
		cells := []string{r.Date, loads(r.Machine)}
		if r.RawESBest != nil {
			cells = append(cells, num(r.RawESBest.DocsPerSecond))
		} else {
			cells = append(cells, "—")
		}
		cells = append(cells, r.ratio("S1"), r.ratio("S2"))
		p99, ok1 := lookup(r.Runs, "S3", "latency_ms", "p99")
		eps, ok2 := lookup(r.Runs, "S3", "events_per_second")
		cells = append(cells, pair(ok1 && ok2, ms(p99)+" / "+num(eps)))
		cells = append(cells, figure(r.Runs, ms, "S3", "visibility_ms", "p99"), figure(r.Runs, ms, "S3", "search_latency_ms", "p99"))
		rate, ok := lookup(r.Runs, "S6", "rows_per_second")
		cells = append(cells, pair(ok, num(rate)+" ("+r.ratio("S6")+")"))
		rss, ok1 := lookup(r.Runs, "S7_summary", "max_rss_bytes")
		lost, ok2 := lookup(r.Runs, "S7_summary", "lost")
		cells = append(cells, pair(ok1 && ok2, fmt.Sprintf("%.0f, %s", rss/1e6, num(lost))))
		cells = append(cells, r.ratio("S8a"), r.ratio("S8b"), planCell(r), streamsCell(r.Runs))
		fmt.Fprintf(&b, "| %s |\n", strings.Join(cells, " | "))
	}
	return b.String()
}

// ratio is a scenario's ratio as version 2 reads it, or "—".
func (r *Report) ratio(id string) string {
	for _, s := range r.Scenarios {
		if s.ID != id || s.Ratio == nil || *s.Ratio == 0 {
			continue
		}
		v := *s.Ratio
		if r.Version < 2 {
			switch id {
			case "S3":
				return "—" // it was offered load ÷ ceiling, not a comparison
			case "S8a", "S8b":
				v = 1 / v // it was Spillway's p99 ÷ the naive design's
			}
		}
		return fmt.Sprintf("%.2f×", v)
	}
	return "—"
}

// planCell is the ratios of the users' plan (S8c-S8f), or "—" for runs without them.
func planCell(r *Report) string {
	var parts []string
	found := false
	for _, id := range []string{"S8c", "S8d", "S8e", "S8f"} {
		v := r.ratio(id)
		found = found || v != "—"
		parts = append(parts, v)
	}
	if !found {
		return "—"
	}
	return strings.Join(parts, " / ")
}

// streamsCell is S9's delivery p99 and search's cores, and the same at the baseline's poll.
func streamsCell(runs map[string]any) string {
	one := func(config string) (string, bool) {
		p99, ok1 := lookup(runs, "S9", config, "delivery_ms", "p99")
		cores, ok2 := lookup(runs, "S9", config, "search_cores")
		return fmt.Sprintf("%s, %.2f", ms(p99), cores), ok1 && ok2
	}
	sp, ok := one("spillway")
	if !ok {
		return "—"
	}
	if base, ok := one("baseline"); ok {
		return sp + " (" + base + ")"
	}
	return sp
}

func loads(m Machine) string {
	first := func(s string) string {
		if f := strings.Fields(s); len(f) > 0 {
			return f[0]
		}
		return "?"
	}
	return first(m.LoadBefore) + " → " + first(m.LoadAfter)
}

// lookup follows keys through the raw results (JSON objects) to a number.
func lookup(runs map[string]any, keys ...string) (float64, bool) {
	var v any = runs
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return 0, false
		}
		if v, ok = m[k]; !ok {
			return 0, false
		}
	}
	f, ok := v.(float64)
	return f, ok
}

func figure(runs map[string]any, format func(float64) string, keys ...string) string {
	v, ok := lookup(runs, keys...)
	return pair(ok, format(v))
}

func pair(ok bool, s string) string {
	if !ok {
		return "—"
	}
	return s
}
