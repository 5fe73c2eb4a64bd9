package ingest_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/event"
)

// Quick throughput figures against the real Elasticsearch, for the closing note of issue 3 (the
// full benchmark is issue 6). Each reports events/s; run them in one invocation so the ratios
// to BenchmarkRawBulk mean something on a shared machine:
//
//	go test -run x -bench . -benchtime 20000x ./pkg/ingest
//
// b.N counts events. Events carry a ~1 KB payload.

// filler is quoted once: the load generator shares the two cores with ingest and Elasticsearch.
var filler = strconv.Quote(strings.Repeat("x", 900))

func eventJSON(i int) string {
	return `{"clientId":"client-` + strconv.Itoa(i%1000) + `","type":"bench","payload":{"seq":` + strconv.Itoa(i) + `,"data":` + filler + `}}`
}

// drive sends total events as requests of perRequest events from clients goroutines and returns
// events/s.
func drive(b *testing.B, url string, clients, perRequest, total int) float64 {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				first := int(next.Add(int64(perRequest))) - perRequest
				if first >= total {
					return
				}
				var body strings.Builder
				for i := first; i < min(first+perRequest, total); i++ {
					body.WriteString(eventJSON(i))
					body.WriteByte('\n')
				}
				res, err := client.Post(url+"/api/v1/events", "application/x-ndjson", strings.NewReader(body.String()))
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != 201 {
					b.Errorf("status %d", res.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(total) / time.Since(start).Seconds()
}

func BenchmarkIngestBatched100(b *testing.B) {
	s := newStack(b, testenv.ES(b), nil)
	b.ReportAllocs()
	b.ResetTimer()
	eps := drive(b, s.srv.URL, 8, 100, b.N)
	b.ReportMetric(eps, "events/s")
	b.ReportMetric(s.metric(b, "spillway_ingest_events_total", "outcome", "accepted")/s.metric(b, "spillway_ingest_bulk_requests_total", "result", "ok"), "events/bulk")
}

func BenchmarkIngestSingle200Clients(b *testing.B) {
	s := newStack(b, testenv.ES(b), nil)
	b.ReportAllocs()
	b.ResetTimer()
	eps := drive(b, s.srv.URL, 200, 1, b.N)
	b.ReportMetric(eps, "events/s")
	b.ReportMetric(s.metric(b, "spillway_ingest_events_total", "outcome", "accepted")/s.metric(b, "spillway_ingest_bulk_requests_total", "result", "ok"), "events/bulk")
}

// BenchmarkRawBulk sends the same documents straight to _bulk (creates with ids into the daily
// index, 1,000 per request, 4 concurrent requests like ingest's default workers): the ceiling
// ingest is measured against.
func BenchmarkRawBulk(b *testing.B) {
	es := testenv.ES(b)
	_ = newStack(b, es, func(*config.Ingest) {}) // installs the template
	now := time.Now().UTC().Format(event.TimeFormat)
	index := es.IndexPrefix + "-" + time.Now().UTC().Format("2006.01.02")
	const perBulk, workers = 1000, 4
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				first := int(next.Add(perBulk)) - perBulk
				if first >= b.N {
					return
				}
				var body bytes.Buffer
				for i := first; i < min(first+perBulk, b.N); i++ {
					id := event.NewID()
					fmt.Fprintf(&body, `{"create":{"_index":%q,"_id":%q}}`+"\n", index, id)
					fmt.Fprintf(&body, `{"id":%q,"clientId":"client-%d","type":"bench","@timestamp":%q,"ingestedAt":%q,"payload":{"seq":%d,"data":%s}}`+"\n",
						id, i%1000, now, now, i, filler)
				}
				res, err := http.Post(es.URLs[0]+"/_bulk?filter_path=errors", "application/x-ndjson", &body)
				if err != nil {
					b.Error(err)
					return
				}
				out, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != 200 || !bytes.Contains(out, []byte(`"errors":false`)) {
					b.Errorf("bulk: %d %s", res.StatusCode, out)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}
