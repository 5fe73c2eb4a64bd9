package deploy

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillway/spillway/pkg/archive"
	"github.com/spillway/spillway/pkg/httpx"
	"github.com/spillway/spillway/pkg/ingest"
	"github.com/spillway/spillway/pkg/search"
	"github.com/spillway/spillway/pkg/tier"
)

// describer is a prometheus.Registerer that only records what would be registered. Unlike
// Gather, it sees vectors that have no child yet, so every metric is listed.
type describer struct{ descs []*prometheus.Desc }

func (d *describer) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 64)
	go func() { c.Describe(ch); close(ch) }()
	for desc := range ch {
		d.descs = append(d.descs, desc)
	}
	return nil
}

func (d *describer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = d.Register(c)
	}
}

func (d *describer) Unregister(prometheus.Collector) bool { return true }

type fakePool struct{}

func (fakePool) Stat() (int32, int32) { return 0, 0 }
func (fakePool) MaxConns() int32      { return 4 }

// metricDoc is one metric as the code declares it: name, help and label names.
type metricDoc struct {
	name   string
	help   string
	labels []string
}

var descRE = regexp.MustCompile(`fqName: "([^"]+)", help: "((?:[^"\\]|\\.)*)",(?: unit: "[^"]*",)? constLabels: \{([^}]*)\}, variableLabels: \{([^}]*)\}`)

// spillwayMetrics returns every spillway_* metric the three services register, from the same
// constructors their mains call.
func spillwayMetrics(t *testing.T) map[string]metricDoc {
	t.Helper()
	d := &describer{}
	httpx.NewMetrics(d, "ingest")
	ingest.NewMetrics(d)
	search.NewMetrics(d)
	archive.NewMetrics(d, fakePool{})
	tier.New(nil, nil, tier.Options{Registerer: d, Refresh: time.Second})
	out := map[string]metricDoc{}
	for _, desc := range d.descs {
		m := descRE.FindStringSubmatch(desc.String())
		if m == nil {
			t.Fatalf("cannot read %s", desc)
		}
		if !strings.HasPrefix(m[1], "spillway_") {
			continue
		}
		var labels []string
		for _, part := range []string{m[3], m[4]} {
			for _, l := range strings.Split(part, ",") {
				if l = strings.TrimSpace(l); l != "" {
					labels = append(labels, strings.SplitN(l, "=", 2)[0])
				}
			}
		}
		sort.Strings(labels)
		out[m[1]] = metricDoc{name: m[1], help: m[2], labels: labels}
	}
	if len(out) < 10 {
		t.Fatalf("only %d spillway metrics found: the describer is broken", len(out))
	}
	return out
}

// TestMetricsTable keeps the metrics table (docs/operations.md) true: every spillway_* metric the
// services register is listed once with its labels, and nothing else is.
func TestMetricsTable(t *testing.T) {
	metrics := spillwayMetrics(t)
	readme := string(readFile(t, "docs/operations.md"))
	start := strings.Index(readme, "<!-- metrics-table -->")
	end := strings.Index(readme, "<!-- /metrics-table -->")
	if start < 0 || end < start {
		t.Fatal("docs/operations.md lacks the <!-- metrics-table --> ... <!-- /metrics-table --> block")
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(readme[start:end], "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 5 || !strings.Contains(cells[1], "spillway_") {
			continue
		}
		name := strings.Trim(strings.TrimSpace(cells[1]), "`")
		if _, dup := rows[name]; dup {
			t.Errorf("docs/operations.md lists %s twice", name)
		}
		var labels []string
		for _, l := range strings.Split(strings.TrimSpace(cells[3]), ",") {
			if l = strings.Trim(strings.TrimSpace(l), "`"); l != "" && l != "—" {
				labels = append(labels, l)
			}
		}
		sort.Strings(labels)
		rows[name] = labels
		typ := strings.TrimSpace(cells[2])
		switch typ {
		case "counter", "gauge", "histogram":
		default:
			t.Errorf("docs/operations.md row %s: type %q", name, typ)
		}
		if strings.HasSuffix(name, "_total") != (typ == "counter") {
			t.Errorf("docs/operations.md row %s: type %s does not match the name's suffix convention", name, typ)
		}
	}
	for name, m := range metrics {
		got, ok := rows[name]
		if !ok {
			t.Errorf("docs/operations.md metrics table lacks %s (labels %v): %s", name, m.labels, m.help)
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(m.labels) {
			t.Errorf("docs/operations.md row %s: labels %v, code has %v", name, got, m.labels)
		}
	}
	for name := range rows {
		if _, ok := metrics[name]; !ok {
			t.Errorf("docs/operations.md documents %s, which no service registers", name)
		}
	}
}
