package tier

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are spillway_search_tier_*: which tier answered, how fast, and the boundary in use.
type metrics struct {
	queries       *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	refused       *prometheus.CounterVec
	boundaryReads *prometheus.CounterVec
	boundary      prometheus.Gauge
	stale         prometheus.GaugeFunc
}

// newMetrics registers the metrics on reg (when not nil); stale reports whether the boundary
// in use is too old to trust, at scrape time.
func newMetrics(reg prometheus.Registerer, stale func() bool) *metrics {
	m := &metrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_search_tier_queries_total",
			Help: "Queries sent to a tier (hot: Elasticsearch, cold: PostgreSQL) by operation (page, count, get) and outcome (ok, error).",
		}, []string{"tier", "op", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "spillway_search_tier_query_duration_seconds",
			Help:    "Latency of queries to a tier by operation.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"tier", "op"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_search_tier_refused_total",
			Help: "Queries answered 503 without asking PostgreSQL because the cold boundary could not be read recently, by operation.",
		}, []string{"op"}),
		boundaryReads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_search_tier_boundary_reads_total",
			Help: "Reads of the cold boundary from PostgreSQL by outcome (ok, error).",
		}, []string{"outcome"}),
		boundary: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spillway_search_tier_boundary_timestamp_seconds",
			Help: "The cold boundary in use (Unix time): events older are read from PostgreSQL. 0: none recorded (Elasticsearch holds everything).",
		}),
		stale: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "spillway_search_tier_boundary_stale",
			Help: "1 while the last successful boundary read is older than its max age (ranges below the ingest horizon then answer 503).",
		}, func() float64 {
			if stale() {
				return 1
			}
			return 0
		}),
	}
	for _, t := range []string{"hot", "cold"} {
		for _, op := range []string{"page", "count", "get"} {
			m.queries.WithLabelValues(t, op, "ok")
		}
	}
	if reg != nil {
		reg.MustRegister(m.queries, m.latency, m.refused, m.boundaryReads, m.boundary, m.stale)
	}
	return m
}

func (m *metrics) observe(tier, op string, start time.Time, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.queries.WithLabelValues(tier, op, outcome).Inc()
	m.latency.WithLabelValues(tier, op).Observe(time.Since(start).Seconds())
}
