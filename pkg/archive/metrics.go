package archive

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillway/spillway/pkg/pgstore"
)

// PoolStats reports a connection pool's use (*pgstore.Store).
type PoolStats interface {
	Stat() (total, inUse int32)
	MaxConns() int32
}

// Metrics are the archiver's Prometheus metrics (spillway_archiver_*).
type Metrics struct {
	rows       *prometheus.CounterVec
	docsRead   prometheus.Counter
	batches    *prometheus.CounterVec
	batchTime  prometheus.Histogram
	copyBytes  prometheus.Counter
	mismatches *prometheus.GaugeVec
	verifyRuns *prometheus.CounterVec
	errors     *prometheus.CounterVec
	leader     prometheus.Gauge
	// retention
	retentionRuns  *prometheus.CounterVec
	indicesDropped prometheus.Counter
	boundary       prometheus.Gauge
	// the archive's day partitions
	partitions        prometheus.Gauge
	earliestDay       prometheus.Gauge
	partitionsDropped prometheus.Counter
	restorePending    prometheus.Gauge
	lagMu             sync.Mutex
	lagSrc            *lagState
	lagNow            func() time.Time
	collectors        []prometheus.Collector
	poolSampler       PoolStats
}

// NewMetrics creates the metrics and registers them on reg (nil: not registered). pool, when
// not nil, is sampled for the connection gauges at every scrape.
func NewMetrics(reg prometheus.Registerer, pool PoolStats) *Metrics {
	m := &Metrics{
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_archiver_rows_archived_total",
			Help: "Rows inserted into PostgreSQL, by origin: feed (the continuous archiver), repair (verify --repair), backfill, import.",
		}, []string{"origin"}),
		docsRead: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spillway_archiver_documents_read_total",
			Help: "Documents read from the sequence-number feed (more than rows archived only when work is redone).",
		}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_archiver_batches_total",
			Help: "Batch transactions by result: ok, conflict (checkpoint moved by another process: nothing written), error.",
		}, []string{"result"}),
		batchTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "spillway_archiver_batch_duration_seconds",
			Help:    "Time to commit one batch: COPY, insert and checkpoint in one transaction.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
		copyBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spillway_archiver_copy_bytes_total",
			Help: "Row data sent to PostgreSQL with COPY (ids, client ids, types, payloads, times).",
		}),
		mismatches: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "spillway_archiver_verify_mismatches",
			Help: "Result of the latest verification: events missing in PostgreSQL (before repair) and extra in PostgreSQL.",
		}, []string{"kind"}),
		verifyRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_archiver_verify_runs_total",
			Help: "Verifications by result: ok, mismatch, error.",
		}, []string{"result"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_archiver_errors_total",
			Help: "Failed archiving steps by operation; the archiver backs off and retries.",
		}, []string{"op"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spillway_archiver_leader",
			Help: "1 while this process holds the archiver lease and archives, 0 while it stands by.",
		}),
		retentionRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spillway_archiver_retention_runs_total",
			Help: "Periodic retention passes by result: ok, kept (an index failed verification and was kept), error.",
		}, []string{"result"}),
		indicesDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spillway_archiver_indices_dropped_total",
			Help: "Daily Elasticsearch indices deleted by retention after verification.",
		}),
		boundary: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spillway_archiver_cold_boundary_timestamp_seconds",
			Help: "The cold boundary as last set by retention in this process (Unix time; 0: not set here).",
		}),
		partitions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spillway_archiver_partitions",
			Help: "Day partitions of the archive's events table, as last listed by this process (hourly while leading).",
		}),
		earliestDay: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spillway_archiver_earliest_day_timestamp_seconds",
			Help: "Start (Unix time) of the oldest UTC day the archive holds a partition for; 0: none.",
		}),
		partitionsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spillway_archiver_partitions_dropped_total",
			Help: "Day partitions dropped by archive retention (archiver prune --apply).",
		}),
		restorePending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spillway_archiver_restore_pending",
			Help: "1 while PostgreSQL is behind Elasticsearch's retention log (restored from an earlier point in time) and not yet repaired.",
		}),
		poolSampler: pool,
	}
	for _, k := range []string{"missing", "extra"} {
		m.mismatches.WithLabelValues(k)
	}
	m.collectors = []prometheus.Collector{m.rows, m.docsRead, m.batches, m.batchTime, m.copyBytes, m.mismatches, m.verifyRuns, m.errors, m.leader,
		m.retentionRuns, m.indicesDropped, m.boundary, m.partitions, m.earliestDay, m.partitionsDropped, m.restorePending,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "spillway_archiver_lag_seconds",
			Help: "Age (by ingestedAt) of the oldest indexed event not yet archived; 0 when caught up. Exported by the leader.",
		}, m.lagSeconds),
	}
	if pool != nil {
		m.collectors = append(m.collectors,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name:        "spillway_archiver_pool_connections",
				Help:        "PostgreSQL connections of the pool: in use (acquired) and open.",
				ConstLabels: prometheus.Labels{"state": "in_use"},
			}, func() float64 { _, inUse := pool.Stat(); return float64(inUse) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name:        "spillway_archiver_pool_connections",
				Help:        "PostgreSQL connections of the pool: in use (acquired) and open.",
				ConstLabels: prometheus.Labels{"state": "open"},
			}, func() float64 { total, _ := pool.Stat(); return float64(total) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "spillway_archiver_pool_max_connections",
				Help: "The pool's hard cap (postgres.max_conns).",
			}, func() float64 { return float64(pool.MaxConns()) }),
		)
	}
	if reg != nil {
		for _, c := range m.collectors {
			reg.MustRegister(c)
		}
	}
	return m
}

// setPartitions sets the partition gauges from a listing (oldest first).
func (m *Metrics) setPartitions(parts []pgstore.Partition) {
	m.partitions.Set(float64(len(parts)))
	m.earliestDay.Set(0)
	for _, p := range parts {
		if !p.Day.IsZero() {
			m.earliestDay.Set(float64(p.Day.Unix()))
			break
		}
	}
}

func (m *Metrics) setLag(l *lagState, now func() time.Time) {
	m.lagMu.Lock()
	defer m.lagMu.Unlock()
	m.lagSrc, m.lagNow = l, now
}

func (m *Metrics) lagSeconds() float64 {
	m.lagMu.Lock()
	l, now := m.lagSrc, m.lagNow
	m.lagMu.Unlock()
	if l == nil {
		return 0
	}
	return l.seconds(now())
}

// lagState is the ingestedAt of the oldest event known not to be archived (zero: none).
type lagState struct {
	mu     sync.Mutex
	oldest time.Time
}

func (l *lagState) set(t time.Time) {
	l.mu.Lock()
	l.oldest = t
	l.mu.Unlock()
}

func (l *lagState) seconds(now time.Time) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.oldest.IsZero() {
		return 0
	}
	return max(0, now.Sub(l.oldest).Seconds())
}
