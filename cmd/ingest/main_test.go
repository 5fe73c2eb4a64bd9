package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spillway/spillway/api/apitest"
	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/config"
)

// These tests run the real binary as a subprocess: only a process can be killed with -9.

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBuilds()
	os.Exit(code)
}

type proc struct {
	*testenv.Process
	url    string
	client *http.Client // checks every answer against api/openapi.yaml
}

// start runs the ingest binary against es with extra SPILLWAY_ environment settings and waits
// until it is ready.
func start(t *testing.T, es config.Elasticsearch, env ...string) *proc {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	environ := testenv.Env(append(testenv.ESEnv(es), "SPILLWAY_HTTP_ADDR="+addr, "SPILLWAY_HTTP_SHUTDOWN_GRACE=20s")...)
	p := &proc{Process: testenv.StartProcess(t, "ingest", testenv.Build(t, "cmd/ingest"), append(environ, env...)), url: "http://" + addr,
		client: &http.Client{Transport: apitest.Transport(t, apitest.Ingest, nil)}}
	p.WaitHTTP(t, p.url+"/readyz", time.Minute)
	return p
}

func (p *proc) post(query string, body string) (int, []byte, error) {
	res, err := p.client.Post(p.url+"/api/v1/events"+query, "application/x-ndjson", strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, b, err
}

// countIDs returns how many of the ids are stored, after a refresh.
func countIDs(t *testing.T, es config.Elasticsearch, ids []string) int {
	t.Helper()
	base := es.URLs[0] + "/" + es.IndexPrefix + "-*"
	res, err := http.Post(base+"/_refresh?allow_no_indices=true", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	q, _ := json.Marshal(map[string]any{"query": map[string]any{"ids": map[string]any{"values": ids}}})
	res, err = http.Post(base+"/_count?allow_no_indices=true", "application/json", bytes.NewReader(q))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out struct {
		Count int `json:"count"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || res.StatusCode != 200 {
		t.Fatalf("count: %d %v", res.StatusCode, err)
	}
	return out.Count
}

func batch(prefix string, n int) (string, []string) {
	var b strings.Builder
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%d", prefix, i)
		fmt.Fprintf(&b, `{"id":%q,"clientId":"client-%d","payload":{"i":%d}}`+"\n", ids[i], i%7, i)
	}
	return b.String(), ids
}

func TestKill9KeepsAcknowledgedEvents(t *testing.T) {
	es := testenv.ES(t)
	p := start(t, es)
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	enough := make(chan struct{})
	var once sync.Once
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				body, ids := batch(fmt.Sprintf("k%d-%d", c, i), 5)
				status, resp, err := p.post("", body)
				if err != nil {
					return // killed
				}
				if status != 201 {
					t.Errorf("status %d: %s", status, resp)
					return
				}
				mu.Lock()
				acked = append(acked, ids...)
				if len(acked) >= 400 {
					once.Do(func() { close(enough) })
				}
				mu.Unlock()
			}
		}()
	}
	select {
	case <-enough:
	case <-time.After(2 * time.Minute):
		t.Fatal("not enough events acknowledged")
	}
	// kill -9 while requests are in flight.
	p.Kill()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if got := countIDs(t, es, acked); got != len(acked) {
		t.Fatalf("%d of %d acknowledged events stored after kill -9", got, len(acked))
	}
	t.Logf("%d acknowledged events, all stored after kill -9", len(acked))
}

func TestSIGTERMWritesAsyncEvents(t *testing.T) {
	es := testenv.ES(t)
	// No flush fires by itself: whatever is written, the shutdown drain writes.
	p := start(t, es, "SPILLWAY_INGEST_BULK_FLUSH_INTERVAL=1h")
	var all []string
	for i := 0; i < 10; i++ {
		body, ids := batch(fmt.Sprintf("async-%d", i), 3)
		status, resp, err := p.post("?ack=async", body)
		if err != nil || status != 202 {
			t.Fatalf("async post: %d %s %v", status, resp, err)
		}
		all = append(all, ids...)
	}
	if got := countIDs(t, es, all); got != 0 {
		t.Fatalf("%d events stored before shutdown; the test cannot show the drain writes them", got)
	}
	p.Term()
	if err := p.Wait(time.Minute); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if got := countIDs(t, es, all); got != len(all) {
		t.Fatalf("%d of %d async events stored after SIGTERM", got, len(all))
	}
}
