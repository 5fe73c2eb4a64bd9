package search

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the search service's own metrics; request counts and latencies by route and
// status come from httpx.Metrics.
type Metrics struct {
	openStreams  prometheus.Gauge
	streamEvents prometheus.Counter
	streamReads  *prometheus.CounterVec
	queryLatency *prometheus.HistogramVec
}

// NewMetrics registers the search metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		openStreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spillway_search_open_streams",
			Help: "Live event streams currently open in this process.",
		}),
		streamEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spillway_search_stream_events_total",
			Help: "Events delivered to live streams.",
		}),
		streamReads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_search_stream_shard_reads_total",
			Help: "Reads of one shard's new events by one live stream, by source: window (the poller's shared read, filtered in memory) or elasticsearch (the stream's own query).",
		}, []string{"source"}),
		queryLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "spillway_search_es_query_duration_seconds",
			Help:    "Elasticsearch request latency seen by search, by operation (page, count, get, shards, index_uuids, refresh, read_shard, read_window) and outcome (ok, error).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"op", "outcome"}),
	}
	reg.MustRegister(m.openStreams, m.streamEvents, m.streamReads, m.queryLatency)
	return m
}

// observe records one Elasticsearch request that started at start.
func (m *Metrics) observe(op string, start time.Time, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.queryLatency.WithLabelValues(op, outcome).Observe(time.Since(start).Seconds())
}
