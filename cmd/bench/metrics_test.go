package main

import (
	"math"
	"os"
	"testing"
)

func TestServerP99ReadsTheHistogramOfOneStatus(t *testing.T) {
	bucket := func(status, le string) string {
		return `spillway_http_request_duration_seconds_bucket{method="POST",route="/api/v1/events",service="ingest",status="` + status + `",le="` + le + `"}`
	}
	before := metrics{bucket("503", "0.001"): 10, bucket("503", "0.05"): 10, bucket("503", "10"): 10, bucket("503", "+Inf"): 10}
	after := metrics{
		// 100 new 503s: 98 under 1 ms, 1 under 50 ms, 1 under 10 s.
		bucket("503", "0.001"): 108, bucket("503", "0.05"): 109, bucket("503", "10"): 110, bucket("503", "+Inf"): 110,
		bucket("201", "0.001"): 0, bucket("201", "+Inf"): 1000,
	}
	p99, n := serverP99(before, after, "503")
	if n != 100 || p99 != 50 {
		t.Fatalf("p99 %v ms over %v requests, want 50 ms over 100", p99, n)
	}
	if p, n := serverP99(before, after, "429"); p != 0 || n != 0 {
		t.Fatalf("no 429s: %v %v", p, n)
	}
	// 3 % slower than 10 s: beyond the last finite bucket.
	after[bucket("503", "0.001")], after[bucket("503", "0.05")], after[bucket("503", "10")] = 100, 107, 107
	if p, _ := serverP99(before, after, "503"); !math.IsInf(p, 1) {
		t.Fatalf("p99 beyond the last finite bucket: %v", p)
	}
}

func TestDiffBulk(t *testing.T) {
	before := metrics{
		`spillway_ingest_bulk_requests_total{result="ok"}`:                    10,
		`spillway_ingest_events_total{ack="sync",outcome="accepted"}`:         100,
		`spillway_ingest_bulk_bytes_total`:                                    1024,
		`spillway_ingest_bulk_duration_seconds_sum`:                           1,
		`spillway_ingest_bulk_duration_seconds_count`:                         10,
		`spillway_ingest_events_total{ack="sync",outcome="failed"}`:           5, // not counted: only acknowledged events
		`spillway_ingest_events_total{ack="searchable",outcome="duplicated"}`: 0,
		`spillway_ingest_bulk_requests_total{result="failed"}`:                0,
	}
	after := metrics{}
	for k, v := range before {
		after[k] = v
	}
	after[`spillway_ingest_bulk_requests_total{result="ok"}`] = 14
	after[`spillway_ingest_bulk_requests_total{result="failed"}`] = 1
	after[`spillway_ingest_events_total{ack="sync",outcome="accepted"}`] = 490
	after[`spillway_ingest_events_total{ack="searchable",outcome="duplicated"}`] = 10
	after[`spillway_ingest_bulk_bytes_total`] = 1024 + 5*2048
	after[`spillway_ingest_bulk_duration_seconds_sum`] = 1.1
	after[`spillway_ingest_bulk_duration_seconds_count`] = 15
	// 100 bulk requests: 99 under 5 ms, one under 250 ms; their first events waited under 0.5 ms.
	after[`spillway_ingest_bulk_duration_seconds_bucket{le="0.005"}`] = 99
	after[`spillway_ingest_bulk_duration_seconds_bucket{le="0.25"}`] = 100
	after[`spillway_ingest_bulk_duration_seconds_bucket{le="+Inf"}`] = 100
	after[`spillway_ingest_bulk_wait_seconds_bucket{le="0.0005"}`] = 100
	after[`spillway_ingest_bulk_wait_seconds_bucket{le="+Inf"}`] = 100
	s := diffBulk(before, after)
	if s.Bulks != 5 || s.EventsPerBulk != 80 || s.KBPerBulk != 2 || math.Abs(s.MeanBulkMS-20) > 1e-9 ||
		s.BulkP99MS != "5" || s.WaitP99MS != "0.5" || s.AckP99MS != "" {
		t.Fatalf("%+v", s)
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestCPUAccounting(t *testing.T) {
	c := startCPU(map[string]int{"self": os.Getpid()})
	x := 0
	for i := 0; i < 300_000_000; i++ { // burn some CPU so that the counters move
		x += i % 7
	}
	got := c.stop()
	if x == 0 || got["self"] <= 0 || got["machine"] <= 0 {
		t.Fatalf("%v", got)
	}
	if _, err := procCPU(1 << 30); err == nil {
		t.Fatal("no such process: want an error")
	}
}
