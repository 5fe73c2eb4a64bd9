package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
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
	// Count, when positive, stops the run after this many documents (loading a backlog) instead
	// of after Duration; Duration then only bounds it.
	Count int64
	// IDPrefix starts every document id (default "raw-<run>-").
	IDPrefix string
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

// RawBulk sends documents encoded exactly as ingest encodes them (DocShape) straight to _bulk (op_type create,
// default durability) for cfg.Duration, or until cfg.Count documents, and reports documents
// per second.
func RawBulk(ctx context.Context, cfg RawBulkConfig) (*RawBulkResult, error) {
	if cfg.BulkSize <= 0 || cfg.Concurrency <= 0 || cfg.Duration <= 0 {
		return nil, fmt.Errorf("raw bulk: bulk size, concurrency and duration must be positive")
	}
	shape := NewDocShape(cfg.EventSize, cfg.Clients)
	idPrefix := cfg.IDPrefix
	if idPrefix == "" {
		idPrefix = "raw-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Concurrency * 2}, Timeout: time.Minute}
	defer client.CloseIdleConnections()
	var docs, failedReq, failedItems, seq atomic.Int64
	var encodeErr atomic.Pointer[error]
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < cfg.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for runCtx.Err() == nil {
				first := seq.Add(int64(cfg.BulkSize)) - int64(cfg.BulkSize)
				last := first + int64(cfg.BulkSize)
				if cfg.Count > 0 {
					if first >= cfg.Count {
						return
					}
					last = min(last, cfg.Count)
				}
				buf = buf[:0]
				now := time.Now().UTC()
				index := cfg.IndexPrefix + "-" + now.Format("2006.01.02")
				for i := first; i < last; i++ {
					id := idPrefix + strconv.FormatInt(i, 10)
					buf = append(buf, `{"create":{"_index":"`...)
					buf = append(buf, index...)
					buf = append(buf, `","_id":"`...)
					buf = append(buf, id...)
					buf = append(buf, "\"}}\n"...)
					var err error
					if buf, err = shape.AppendDoc(buf, id, now, i); err != nil {
						encodeErr.CompareAndSwap(nil, &err)
						cancel()
						return
					}
					buf = append(buf, '\n')
				}
				n, itemsFailed, err := postBulk(ctx, client, cfg.ESURL, buf)
				if err != nil {
					failedReq.Add(1)
					if cfg.Count > 0 {
						// A backlog must be complete: give up rather than leave a hole.
						cancel()
					}
					continue
				}
				// A request finishing after the deadline still counts: its time is in the elapsed.
				docs.Add(int64(n - itemsFailed))
				failedItems.Add(int64(itemsFailed))
			}
		}()
	}
	wg.Wait()
	if e := encodeErr.Load(); e != nil {
		return nil, fmt.Errorf("raw bulk: encode: %w", *e)
	}
	el := time.Since(start).Seconds()
	res := &RawBulkResult{BulkSize: cfg.BulkSize, Concurrency: cfg.Concurrency, Docs: docs.Load(), Elapsed: el,
		DocsPerSecond: float64(docs.Load()) / el, FailedRequests: failedReq.Load(), FailedItems: failedItems.Load()}
	if cfg.Count > 0 && res.Docs < cfg.Count {
		return res, fmt.Errorf("raw bulk: loaded %d of %d documents (%d failed requests, %d failed items)", res.Docs, cfg.Count, res.FailedRequests, res.FailedItems)
	}
	return res, nil
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
