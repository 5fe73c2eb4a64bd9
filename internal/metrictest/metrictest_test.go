package metrictest_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillway/spillway/internal/metrictest"
)

func TestSum(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c_total", Help: "c"}, []string{"status", "reason"})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "g", Help: "g"})
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h_seconds", Help: "h"})
	reg.MustRegister(c, g, h)
	if got := metrictest.Sum(t, reg, "c_total"); got != 0 {
		t.Fatalf("a vector without children: %v, want 0", got)
	}
	c.WithLabelValues("503", "breaker").Add(3)
	c.WithLabelValues("503", "deadline").Add(4)
	c.WithLabelValues("429", "budget").Add(5)
	g.Set(7)
	h.Observe(1)
	h.Observe(2)
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"c_total", nil, 12},
		{"c_total", []string{"status", "503"}, 7},
		{"c_total", []string{"status", "503", "reason", "deadline"}, 4},
		{"c_total", []string{"status", "429", "reason", "deadline"}, 0},
		{"c_total", []string{"reason", "503"}, 0}, // a value under another label's name
		{"g", nil, 7},
		{"h_seconds", nil, 2},
		{"absent", nil, 0},
	} {
		if got := metrictest.Sum(t, reg, tc.name, tc.labels...); got != tc.want {
			t.Errorf("Sum(%s, %q) = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
}
