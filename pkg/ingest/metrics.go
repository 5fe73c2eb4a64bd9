package ingest

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillway/spillway/pkg/event"
)

// Metrics are the ingest service's Prometheus metrics (spillway_ingest_*).
type Metrics struct {
	events        *prometheus.CounterVec
	retries       prometheus.Counter
	refused       *prometheus.CounterVec
	bulkRequests  *prometheus.CounterVec
	bulkBytes     prometheus.Counter
	bulkLatency   prometheus.Histogram
	bulkEvents    prometheus.Histogram
	bulkWait      prometheus.Histogram
	bulkLimit     prometheus.Gauge
	inflightEvs   prometheus.Gauge
	inflightBytes prometheus.Gauge
	breakerOpen   prometheus.Gauge
}

// Event outcomes counted by spillway_ingest_events_total.
const (
	outcomeAccepted   = "accepted"   // newly written by Elasticsearch
	outcomeDuplicated = "duplicated" // its id already existed: acknowledged, not written again
	outcomeRejected   = "rejected"   // refused by Elasticsearch (mapping); never by validation
	outcomeFailed     = "failed"     // not acknowledged: deadline, breaker, or a failed async write
)

// NewMetrics registers the ingest metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_ingest_events_total",
			Help: "Events handed to Elasticsearch, by outcome (accepted, duplicated, rejected, failed) and ack mode (sync, searchable, async).",
		}, []string{"outcome", "ack"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spillway_ingest_event_retries_total",
			Help: "Times an event was sent again after a 429, 5xx or failed bulk request.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_ingest_requests_refused_total",
			Help: "Requests answered with an error, by status and reason (invalid, too_large, unsupported_media, budget, queue_delay, breaker, deadline, not_ready, rejected, forbidden, rate_limited).",
		}, []string{"status", "reason"}),
		bulkRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_ingest_bulk_requests_total",
			Help: "Bulk requests sent to Elasticsearch, by result (ok: Elasticsearch answered; failed: transport error or 5xx).",
		}, []string{"result"}),
		bulkBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spillway_ingest_bulk_bytes_total",
			Help: "Bytes of bulk request bodies sent to Elasticsearch.",
		}),
		bulkLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "spillway_ingest_bulk_duration_seconds",
			Help:    "Time from sending a bulk request to having read its response.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		bulkEvents: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "spillway_ingest_bulk_events",
			Help:    "Events per bulk request (group commit: events that arrived while earlier requests were in flight share the next one).",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000},
		}),
		bulkWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "spillway_ingest_bulk_wait_seconds",
			Help:    "How long the first event of a bulk request waited for it to be sent (for a free slot, or ingest.bulk_flush_interval).",
			Buckets: []float64{.0001, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		bulkLimit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spillway_ingest_bulk_concurrency_limit",
			Help: "Bulk requests allowed in flight at once, as adapted to Elasticsearch's latency (at most ingest.bulk_workers).",
		}),
		inflightEvs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spillway_ingest_inflight_events",
			Help: "Events accepted by the API and not yet acknowledged or failed (the in-flight budget in use).",
		}),
		inflightBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spillway_ingest_inflight_bytes",
			Help: "Request body bytes being read, validated or awaiting acknowledgement (the in-flight budget in use).",
		}),
		breakerOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spillway_ingest_breaker_open",
			Help: "1 while Elasticsearch is considered unreachable and requests are refused at once with 503.",
		}),
	}
	reg.MustRegister(m.events, m.retries, m.refused, m.bulkRequests, m.bulkBytes, m.bulkLatency,
		m.bulkEvents, m.bulkWait, m.bulkLimit, m.inflightEvs, m.inflightBytes, m.breakerOpen)
	return m
}

func (m *Metrics) observeFlush(f event.Flush) {
	result := "ok"
	if f.Failed() {
		result = "failed"
	}
	m.bulkRequests.WithLabelValues(result).Inc()
	m.bulkBytes.Add(float64(max(f.Bytes, 0)))
	m.bulkLatency.Observe(f.Took.Seconds())
	m.bulkEvents.Observe(float64(f.Events))
	m.bulkWait.Observe(f.Waited.Seconds())
	if f.Limit > 0 {
		m.bulkLimit.Set(float64(f.Limit))
	}
}
