package deploy

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/spillway/spillway/pkg/httpx"
)

const grafanaFile = "mappings/grafana/spillway.json"

const errUnterminated = constErr("unterminated string or bracket")

type grafanaDashboard struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"list"`
	} `json:"templating"`
	Panels []grafanaPanel `json:"panels"`
}

type grafanaPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}

// metricRef is one metric selector in a PromQL expression, with the label names it matches on.
type metricRef struct {
	Name   string
	Labels []string
}

var (
	// promCalls are PromQL functions and aggregation operators: identifiers that are not metrics.
	promCalls = map[string]bool{}
	// promKeywords take a parenthesised label list (by, on, ...) or stand alone (and, bool, ...).
	promLabelLists = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
	promWords      = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true, "inf": true, "nan": true}
)

func init() {
	for _, f := range strings.Fields(`sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio
		abs absent absent_over_time ceil changes clamp clamp_max clamp_min day_of_month day_of_week day_of_year days_in_month
		delta deriv exp floor histogram_avg histogram_count histogram_fraction histogram_quantile histogram_stddev histogram_stdvar
		histogram_sum holt_winters double_exponential_smoothing hour idelta increase irate label_join label_replace ln log2 log10
		minute month predict_linear rate resets round scalar sgn sort sort_desc sort_by_label sort_by_label_desc sqrt time timestamp vector year
		avg_over_time min_over_time max_over_time sum_over_time count_over_time quantile_over_time stddev_over_time stdvar_over_time
		last_over_time present_over_time mad_over_time acos acosh asin asinh atan atanh cos cosh sin sinh tan tanh deg pi rad`) {
		promCalls[f] = true
	}
}

// promMetrics lists the metric selectors of a PromQL expression. It is a small lexer, not a
// parser: enough to tell metric names from functions, keywords, label lists, strings, ranges
// and Grafana variables in the expressions a dashboard holds.
func promMetrics(expr string) ([]metricRef, error) {
	var out []metricRef
	i := 0
	skipSpace := func() {
		for i < len(expr) && strings.ContainsRune(" \t\n\r", rune(expr[i])) {
			i++
		}
	}
	isIdent := func(c byte, first bool) bool {
		return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
	}
	skipString := func() error {
		q := expr[i]
		for i++; i < len(expr); i++ {
			if expr[i] == '\\' && q != '`' {
				i++
				continue
			}
			if expr[i] == q {
				i++
				return nil
			}
		}
		return errUnterminated
	}
	skipTo := func(open, close byte) error {
		depth := 0
		for i < len(expr) {
			switch c := expr[i]; {
			case c == '"' || c == '\'' || c == '`':
				if err := skipString(); err != nil {
					return err
				}
				continue
			case c == open:
				depth++
			case c == close:
				depth--
				if depth == 0 {
					i++
					return nil
				}
			}
			i++
		}
		return errUnterminated
	}
	// matchers reads {a="x", b=~"y"} and returns the label names.
	matchers := func() ([]string, error) {
		start := i
		if err := skipTo('{', '}'); err != nil {
			return nil, err
		}
		var labels []string
		for _, m := range regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`).FindAllStringSubmatch(stripStrings(expr[start:i]), -1) {
			labels = append(labels, m[1])
		}
		return labels, nil
	}
	for i < len(expr) {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			if err := skipString(); err != nil {
				return nil, err
			}
		case c == '[':
			if err := skipTo('[', ']'); err != nil {
				return nil, err
			}
		case c == '{':
			labels, err := matchers()
			if err != nil {
				return nil, err
			}
			out = append(out, metricRef{Labels: labels}) // a selector without a name
		case c == '$':
			for i++; i < len(expr) && isIdent(expr[i], false); i++ {
			}
		case c >= '0' && c <= '9' || c == '.':
			// Numbers and durations (0.99, 5m, 1e3) are one token.
			for i < len(expr) && (isIdent(expr[i], false) || expr[i] == '.') {
				i++
			}
		case isIdent(c, true):
			start := i
			for i < len(expr) && isIdent(expr[i], false) {
				i++
			}
			word := expr[start:i]
			skipSpace()
			next := byte(0)
			if i < len(expr) {
				next = expr[i]
			}
			switch {
			case promLabelLists[word]:
				if next == '(' {
					if err := skipTo('(', ')'); err != nil {
						return nil, err
					}
				}
			case promWords[word]:
			case promCalls[word] && (next == '(' || strings.HasPrefix(expr[i:], "by") || strings.HasPrefix(expr[i:], "without")):
			default:
				ref := metricRef{Name: word}
				if next == '{' {
					labels, err := matchers()
					if err != nil {
						return nil, err
					}
					ref.Labels = labels
				}
				out = append(out, ref)
			}
		default:
			i++
		}
	}
	return out, nil
}

// stripStrings blanks out quoted strings so that label values cannot look like label names.
func stripStrings(s string) string {
	return regexp.MustCompile(`"(\\.|[^"\\])*"|'(\\.|[^'\\])*'|`+"`[^`]*`").ReplaceAllString(s, `""`)
}

func TestPromMetrics(t *testing.T) {
	tests := []struct {
		expr string
		want []metricRef
	}{
		{`sum by (service, status) (rate(spillway_http_requests_total{service=~"$service"}[$__rate_interval]))`,
			[]metricRef{{"spillway_http_requests_total", []string{"service"}}}},
		{`histogram_quantile(0.99, sum by (le) (rate(x_seconds_bucket{route!="/a{b}", method="GET"}[5m] offset 1h)))`,
			[]metricRef{{"x_seconds_bucket", []string{"route", "method"}}}},
		{`a / on (instance) group_left (job) b > bool 0 and sum without (x) (c)`,
			[]metricRef{{"a", nil}, {"b", nil}, {"c", nil}}},
		{`max(go_goroutines{job=~"$job"}) + process_open_fds - 1e3`,
			[]metricRef{{"go_goroutines", []string{"job"}}, {"process_open_fds", nil}}},
		{`{__name__=~"spillway_.*"}`, []metricRef{{"", []string{"__name__"}}}},
		{`sum(rate(count[1m]))`, []metricRef{{"count", nil}}},
	}
	for _, tc := range tests {
		got, err := promMetrics(tc.expr)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.expr, got, tc.want)
		}
	}
	if _, err := promMetrics(`rate(x{a="unterminated}[5m])`); err == nil {
		t.Error("an unterminated string was accepted")
	}
}

// registeredFamilies gathers what the services register today: the HTTP metrics of
// pkg/httpx (after one request, so the vectors have a child) and the Go and process collectors.
func registeredFamilies(t *testing.T) map[string]map[string]bool {
	t.Helper()
	reg := httpx.NewRegistry()
	m := httpx.NewMetrics(reg, "ingest")
	r := httpx.NewRouter()
	r.Use(m.Middleware)
	r.HandleFunc("/x", func(w http.ResponseWriter, r *http.Request) {})
	r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/x", nil))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]bool{}
	for _, mf := range mfs {
		labels := map[string]bool{"job": true, "instance": true} // added by Prometheus at scrape
		for _, metric := range mf.GetMetric() {
			for _, l := range metric.GetLabel() {
				labels[l.GetName()] = true
			}
		}
		names := []string{mf.GetName()}
		switch mf.GetType().String() {
		case "HISTOGRAM":
			names = append(names, mf.GetName()+"_sum", mf.GetName()+"_count")
			withLE := map[string]bool{"le": true}
			for l := range labels {
				withLE[l] = true
			}
			out[mf.GetName()+"_bucket"] = withLE
		case "SUMMARY":
			names = append(names, mf.GetName()+"_sum", mf.GetName()+"_count")
			labels["quantile"] = true
		}
		for _, n := range names {
			out[n] = labels
		}
	}
	return out
}

// TestGrafanaDashboard checks mappings/grafana/spillway.json: valid JSON in Grafana's dashboard
// model, unique panel ids on a non-overlapping 24-column grid, every target on the ${datasource}
// variable, every variable used defined, and every PromQL expression naming only spillway_*,
// go_* and process_* metrics. Metrics that exist today (pkg/httpx's HTTP metrics and the Go and
// process collectors) must exist by that exact name with the labels the expressions match on.
func TestGrafanaDashboard(t *testing.T) {
	var d grafanaDashboard
	if err := decodeStrict(readFile(t, grafanaFile), &d); err != nil {
		t.Fatalf("%s: %v", grafanaFile, err)
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 || len(d.Panels) == 0 {
		t.Fatalf("uid %q, title %q, schemaVersion %d, %d panels: not a Grafana 10+ dashboard", d.UID, d.Title, d.SchemaVersion, len(d.Panels))
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	if !vars["datasource"] {
		t.Error("no datasource variable: the dashboard would be tied to one Grafana's datasource uid")
	}
	known := registeredFamilies(t)
	// Every spillway_* metric, including vectors that have no child yet (the describer sees them).
	for name, m := range spillwayMetrics(t) {
		labels := map[string]bool{"job": true, "instance": true}
		for _, l := range m.labels {
			labels[l] = true
		}
		for _, n := range []string{name, name + "_sum", name + "_count"} {
			known[n] = labels
		}
		withLE := map[string]bool{"le": true}
		for l := range labels {
			withLE[l] = true
		}
		known[name+"_bucket"] = withLE
	}
	prefixes := map[string]int{"spillway_http_": 0, "spillway_ingest_": 0, "spillway_search_": 0, "spillway_archiver_": 0, "go_": 0, "process_": 0}
	ids := map[int]bool{}
	varRE := regexp.MustCompile(`\$\{?([a-zA-Z_][a-zA-Z0-9_]*)`)
	for i, p := range d.Panels {
		g := p.GridPos
		if ids[p.ID] || p.ID == 0 {
			t.Errorf("panel %q: id %d missing or repeated", p.Title, p.ID)
		}
		ids[p.ID] = true
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
		for _, q := range d.Panels[:i] {
			h := q.GridPos
			if g.X < h.X+h.W && h.X < g.X+g.W && g.Y < h.Y+h.H && h.Y < g.Y+g.H {
				t.Errorf("panels %q and %q overlap", q.Title, p.Title)
			}
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want uid ${datasource}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refIDs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.RefID == "" || refIDs[tg.RefID] {
				t.Errorf("panel %q: refId %q empty or repeated", p.Title, tg.RefID)
			}
			refIDs[tg.RefID] = true
			for _, m := range varRE.FindAllStringSubmatch(tg.Expr, -1) {
				if !strings.HasPrefix(m[1], "__") && !vars[m[1]] {
					t.Errorf("panel %q: $%s is not a dashboard variable", p.Title, m[1])
				}
			}
			refs, err := promMetrics(tg.Expr)
			if err != nil || len(refs) == 0 {
				t.Errorf("panel %q: %q: no metric found (%v)", p.Title, tg.Expr, err)
				continue
			}
			for _, r := range refs {
				if r.Name == "" {
					t.Errorf("panel %q: selector without a metric name in %q", p.Title, tg.Expr)
					continue
				}
				matched := false
				for pre := range prefixes {
					if strings.HasPrefix(r.Name, pre) {
						prefixes[pre]++
						matched = true
					}
				}
				if !matched && !strings.HasPrefix(r.Name, "spillway_") {
					t.Errorf("panel %q: metric %s is not a spillway_, go_ or process_ metric", p.Title, r.Name)
				}
				{
					labels, ok := known[r.Name]
					if !ok {
						t.Errorf("panel %q: metric %s is not registered by the services", p.Title, r.Name)
						continue
					}
					for _, l := range r.Labels {
						if !labels[l] {
							t.Errorf("panel %q: metric %s has no label %q (has %v)", p.Title, r.Name, l, sortedKeys(labels))
						}
					}
				}
			}
		}
	}
	var missing []string
	for pre, n := range prefixes {
		if n == 0 {
			missing = append(missing, pre)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("no panel shows %v metrics", missing)
	}
}
