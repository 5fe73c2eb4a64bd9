package search_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/event"
	"github.com/spillway/spillway/pkg/search"
)

// BenchmarkStreams measures what open live streams cost while events arrive: N streams, each
// on one of 1,000 clients, follow a day index that receives 1,000 events/s (100 per bulk request
// every 100 ms) for 10 s per iteration. It reports the cores Elasticsearch used (from its node
// stats), the cores of this test process (search, the SSE readers and the writer together),
// Elasticsearch queries per second issued by the stream machinery, and events delivered.
//
//	go test -run XXX -bench BenchmarkStreams -benchtime 1x ./pkg/search/
//
// Each size runs three ways: reads=own makes every stream query Elasticsearch itself (what the
// poller's shared windows replace) at the former 500 ms poll; reads=shared uses the windows, at
// the former poll and at search.stream_poll's default.
func BenchmarkStreams(b *testing.B) {
	def, err := time.ParseDuration(config.Default(config.RoleSearch, "search.stream_poll"))
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{10, 300, 1000} {
		for _, mode := range []struct {
			name    string
			streams int64
			poll    time.Duration
		}{{"own", math.MaxInt64, 500 * time.Millisecond}, {"shared", 0, 500 * time.Millisecond}, {"shared", 0, def}} {
			b.Run(fmt.Sprintf("streams=%d/reads=%s/poll=%s", n, mode.name, mode.poll), func(b *testing.B) {
				if mode.streams != 0 {
					defer search.SetWindowStreams(mode.streams)()
				}
				benchStreams(b, n, mode.poll)
			})
		}
	}
}

func benchStreams(b *testing.B, streams int, poll time.Duration) {
	const clients, rate, period = 1000, 1000, 10 * time.Second
	env := newESEnv(b, 1)
	cfg := testConfig()
	cfg.StreamPoll = poll
	cfg.MaxStreams = streams
	srv := startServer(b, env.store, env.store, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// One event first, so the day index exists before the streams open.
	now := time.Now().UTC()
	env.index(b, []event.Event{ev(event.NewID(), "c0000", "t", now)})

	var delivered atomic.Int64
	var wg sync.WaitGroup
	tr := &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: streams}
	for i := 0; i < streams; i++ {
		q := url.Values{"clientId": {fmt.Sprintf("c%04d", i%clients)}}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/v1/events/stream?"+q.Encode(), nil)
		res, err := tr.RoundTrip(req)
		if err != nil || res.StatusCode != http.StatusOK {
			b.Fatalf("stream %d: %v %v", i, res, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer res.Body.Close()
			sc := bufio.NewScanner(res.Body)
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "data: ") {
					delivered.Add(1)
				}
			}
		}()
	}
	r := rand.New(rand.NewPCG(7, 8))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		es0, self0, q0, d0 := esCPU(b, env), selfCPU(), streamQueries(b, srv), delivered.Load()
		start := time.Now()
		tick := time.NewTicker(100 * time.Millisecond)
		for time.Since(start) < period {
			<-tick.C
			batch := make([]event.Event, 0, rate/10)
			for len(batch) < cap(batch) {
				at := time.Now().UTC()
				batch = append(batch, event.Event{ID: event.NewID(), ClientID: fmt.Sprintf("c%04d", r.IntN(clients)), Type: "t",
					Timestamp: at, IngestedAt: at, Payload: json.RawMessage(`{"n":1}`)})
			}
			if err := env.tryBulk(bulkBody(env, batch), "false"); err != nil {
				b.Fatal(err)
			}
		}
		tick.Stop()
		secs := time.Since(start).Seconds()
		b.ReportMetric((esCPU(b, env)-es0)/secs, "es-cores")
		b.ReportMetric((selfCPU()-self0)/secs, "process-cores")
		b.ReportMetric((streamQueries(b, srv)-q0)/secs, "es-queries/s")
		b.ReportMetric(float64(delivered.Load()-d0)/secs, "delivered/s")
	}
	b.StopTimer()
	cancel()
	srv.stopPoller()
	wg.Wait()
}

// esCPU returns the CPU seconds the Elasticsearch node has used.
func esCPU(tb testing.TB, env *esEnv) float64 {
	res, err := http.Get(env.cfg.URLs[0] + "/_nodes/_local/stats/process?filter_path=nodes.*.process.cpu.total_in_millis")
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	var out struct {
		Nodes map[string]struct {
			Process struct {
				CPU struct {
					TotalInMillis int64 `json:"total_in_millis"`
				} `json:"cpu"`
			} `json:"process"`
		} `json:"nodes"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || len(out.Nodes) != 1 {
		tb.Fatalf("node stats: %v", err)
	}
	for _, n := range out.Nodes {
		return float64(n.Process.CPU.TotalInMillis) / 1000
	}
	return 0
}

// selfCPU returns the CPU seconds (user and system) this process has used.
func selfCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// streamQueries counts the Elasticsearch searches the stream machinery has made (shard reads).
func streamQueries(tb testing.TB, srv *server) float64 {
	mfs, err := srv.reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "spillway_search_es_query_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if isReadOp(m) {
				n += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return n
}

func isReadOp(m *dto.Metric) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == "op" && strings.HasPrefix(l.GetValue(), "read_") {
			return true
		}
	}
	return false
}
