package main

import (
	"bufio"
	"fmt"
	"math"
	"net/http"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// metrics is one scrape of ingest's /metrics: sample name with labels → value.
type metrics map[string]float64

// scrape reads ingest's Prometheus metrics from its admin listener.
func scrape(p *proc) metrics {
	m := metrics{}
	c := http.Client{Timeout: 5 * time.Second}
	res, err := c.Get("http://" + p.admin + "/metrics")
	if err != nil {
		return m
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

// sum adds every sample of a metric whose labels contain all of match.
func (m metrics) sum(name string, match ...string) float64 {
	var s float64
	for k, v := range m {
		if base, labels, _ := strings.Cut(k, "{"); base == name && hasLabels(labels, match) {
			s += v
		}
	}
	return s
}

// hasLabels reports whether a sample's labels contain every one of match (`key="value"`).
func hasLabels(labels string, match []string) bool {
	for _, want := range match {
		if !strings.Contains(labels, want) {
			return false
		}
	}
	return true
}

// bulkStats describes ingest's bulk requests between two scrapes: the group-commit figures.
type bulkStats struct {
	Bulks         float64 `json:"bulk_requests"`
	EventsPerBulk float64 `json:"events_per_bulk"`
	MeanBulkMS    float64 `json:"mean_bulk_ms"`
	KBPerBulk     float64 `json:"kb_per_bulk"`
	Retries       float64 `json:"event_retries"`
	// Where an acknowledgement's time goes, as histogram bucket bounds (ms): the 201s' p99
	// inside ingest, the p99 wait of a bulk request's first event for a slot, and the p99
	// bulk request to Elasticsearch. What the client sees beyond AckP99MS is its own queueing
	// and the loopback. Strings, because a bound may be "+Inf", which JSON cannot carry.
	AckP99MS  string `json:"ack_p99_ms_inside_ingest,omitempty"`
	WaitP99MS string `json:"bulk_wait_p99_ms,omitempty"`
	BulkP99MS string `json:"bulk_p99_ms,omitempty"`
	// CPU is the cores each process used meanwhile (the load generator is the harness itself,
	// which also runs the search probes).
	CPU CPUCores `json:"cpu_cores,omitempty"`
}

func diffBulk(before, after metrics) bulkStats {
	d := func(name string, match ...string) float64 {
		return after.sum(name, match...) - before.sum(name, match...)
	}
	var s bulkStats
	s.Bulks = d("spillway_ingest_bulk_requests_total")
	events := d("spillway_ingest_events_total", `outcome="accepted"`) + d("spillway_ingest_events_total", `outcome="duplicated"`)
	if s.Bulks > 0 {
		s.EventsPerBulk = events / s.Bulks
		s.KBPerBulk = d("spillway_ingest_bulk_bytes_total") / s.Bulks / 1024
	}
	if n := d("spillway_ingest_bulk_duration_seconds_count"); n > 0 {
		s.MeanBulkMS = d("spillway_ingest_bulk_duration_seconds_sum") / n * 1000
	}
	s.Retries = d("spillway_ingest_event_retries_total")
	if p, n := serverP99(before, after, "201"); n > 0 {
		s.AckP99MS = msBound(p)
	}
	if p, n := histP99(before, after, "spillway_ingest_bulk_wait_seconds"); n > 0 {
		s.WaitP99MS = msBound(p)
	}
	if p, n := histP99(before, after, "spillway_ingest_bulk_duration_seconds"); n > 0 {
		s.BulkP99MS = msBound(p)
	}
	return s
}

func (s bulkStats) String() string {
	out := fmt.Sprintf("%.0f bulk requests of %.0f events (%.0f KB) on average, %.0f ms each", s.Bulks, s.EventsPerBulk, s.KBPerBulk, s.MeanBulkMS)
	if s.BulkP99MS != "" {
		out += fmt.Sprintf("; p99s inside ingest (histogram bounds): 201 ≤ %s ms, wait for a bulk slot ≤ %s ms, bulk request ≤ %s ms",
			s.AckP99MS, s.WaitP99MS, s.BulkP99MS)
	}
	if len(s.CPU) > 0 {
		out += fmt.Sprintf("; %s (of %d)", s.CPU, runtime.NumCPU())
	}
	return out
}

// msBound prints a bucket bound in milliseconds: "0.5", "25", "+Inf".
func msBound(ms float64) string {
	if math.IsInf(ms, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(ms, 'f', -1, 64)
}

// serverP99 is the upper bound of the histogram bucket holding the 99th percentile of a
// service's own request durations (spillway_http_request_duration_seconds) for one status,
// between two scrapes, in milliseconds: what the server spent, without the client's queueing.
// The second result is the number of requests.
func serverP99(before, after metrics, status string) (float64, float64) {
	return histP99(before, after, "spillway_http_request_duration_seconds", `status="`+status+`"`)
}

// histP99 is the upper bound, in milliseconds, of the bucket holding the 99th percentile of
// the observations a histogram of seconds gained between two scrapes, over every series whose
// labels contain all of match; the second result is the number of observations. A bucket
// bound, not an interpolation: "≤ 250 ms" is what the histogram can say.
func histP99(before, after metrics, name string, match ...string) (float64, float64) {
	type bucket struct{ le, n float64 }
	var bs []bucket
	byLE := map[float64]float64{}
	for k, v := range after {
		base, labels, _ := strings.Cut(k, "{")
		i := strings.Index(labels, `le="`)
		if base != name+"_bucket" || !hasLabels(labels, match) || i < 0 {
			continue
		}
		leText := labels[i+4:]
		leText = leText[:strings.IndexByte(leText, '"')]
		le, err := strconv.ParseFloat(leText, 64)
		if leText == "+Inf" {
			le, err = math.Inf(1), nil
		}
		if err != nil {
			continue
		}
		byLE[le] += v - before[k]
	}
	for le, n := range byLE {
		bs = append(bs, bucket{le, n})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	if len(bs) == 0 || bs[len(bs)-1].n == 0 {
		return 0, 0
	}
	total := bs[len(bs)-1].n
	for _, b := range bs {
		if b.n >= 0.99*total {
			return b.le * 1000, total
		}
	}
	return math.Inf(1), total
}
