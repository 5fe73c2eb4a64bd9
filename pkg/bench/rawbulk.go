package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// RawBulkConfig describes a raw _bulk run: the ceiling for ingest on the same cluster.
type RawBulkConfig struct {
	ESURL       string
	IndexPrefix string // documents go to <prefix>-YYYY.MM.DD like ingest's (install the template first)
	Duration    time.Duration
	BulkSize    int // documents per _bulk request
	Concurrency int
	EventSize   int
	Clients     int
}

// RawBulkResult is what a raw run measured.
type RawBulkResult struct {
	BulkSize       int     `json:"bulk_size"`
	Concurrency    int     `json:"concurrency"`
	Docs           int64   `json:"docs"`
	Elapsed        float64 `json:"elapsed_seconds"`
	DocsPerSecond  float64 `json:"docs_per_second"`
	FailedRequests int64   `json:"failed_requests"`
	FailedItems    int64   `json:"failed_items"`
}

// RawBulk sends documents shaped exactly like ingest's straight to _bulk (op_type create,
// default durability) for cfg.Duration and reports documents per second.
func RawBulk(ctx context.Context, cfg RawBulkConfig) (*RawBulkResult, error) {
	if cfg.BulkSize <= 0 || cfg.Concurrency <= 0 || cfg.Duration <= 0 {
		return nil, fmt.Errorf("raw bulk: bulk size, concurrency and duration must be positive")
	}
	filler := strings.Repeat("x", max(cfg.EventSize-200, 8))
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Concurrency * 2}, Timeout: time.Minute}
	var docs, failedReq, failedItems, seq atomic.Int64
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < cfg.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf bytes.Buffer
			for runCtx.Err() == nil {
				buf.Reset()
				now := time.Now().UTC()
				index := cfg.IndexPrefix + "-" + now.Format("2006.01.02")
				ts := now.Truncate(time.Microsecond).Format("2006-01-02T15:04:05.000000Z07:00")
				for i := 0; i < cfg.BulkSize; i++ {
					id := "raw-" + run + "-" + strconv.FormatInt(seq.Add(1), 10)
					fmt.Fprintf(&buf, `{"create":{"_index":%q,"_id":%q}}`+"\n", index, id)
					doc := map[string]any{"id": id, "clientId": "client-" + strconv.Itoa(rand.IntN(max(cfg.Clients, 1))), "type": "load",
						"@timestamp": ts, "ingestedAt": ts, "payload": map[string]any{"data": filler}}
					b, _ := json.Marshal(doc)
					buf.Write(b)
					buf.WriteByte('\n')
				}
				n, itemsFailed, err := postBulk(ctx, client, cfg.ESURL, buf.Bytes())
				if err != nil {
					failedReq.Add(1)
					continue
				}
				// A request finishing after the deadline still counts: its time is in the elapsed.
				docs.Add(int64(n - itemsFailed))
				failedItems.Add(int64(itemsFailed))
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	return &RawBulkResult{BulkSize: cfg.BulkSize, Concurrency: cfg.Concurrency, Docs: docs.Load(), Elapsed: el,
		DocsPerSecond: float64(docs.Load()) / el, FailedRequests: failedReq.Load(), FailedItems: failedItems.Load()}, nil
}

func postBulk(ctx context.Context, client *http.Client, esURL string, body []byte) (items, failed int, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(esURL, "/")+"/_bulk?filter_path=errors,items.*.status", bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	res, err := client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, res.Body)
		return 0, 0, fmt.Errorf("bulk: status %d", res.StatusCode)
	}
	var out struct {
		Items []map[string]struct {
			Status int `json:"status"`
		} `json:"items"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return 0, 0, err
	}
	for _, it := range out.Items {
		for _, r := range it {
			if r.Status >= 300 {
				failed++
			}
		}
	}
	return len(out.Items), failed, nil
}
