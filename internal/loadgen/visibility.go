package loadgen

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// visibility measures, for a sample of acknowledged events, the time from the acknowledgement
// until GET /api/v1/events/{id} finds the event.
type visibility struct {
	cfg    Config
	client *http.Client
	n      atomic.Int64
	lost   atomic.Int64
	wg     sync.WaitGroup
	sem    chan struct{}
	mu     sync.Mutex
	lat    []time.Duration
}

func newVisibility(cfg Config, client *http.Client) *visibility {
	return &visibility{cfg: cfg, client: client, sem: make(chan struct{}, 64)}
}

func (v *visibility) maybeCheck(ctx context.Context, ids []string) {
	if v.cfg.VisibilityEvery <= 0 || v.cfg.SearchURL == "" {
		return
	}
	if v.n.Add(1)%int64(v.cfg.VisibilityEvery) != 0 {
		return
	}
	select {
	case v.sem <- struct{}{}:
	default:
		return // enough probes in flight; skip rather than distort the load
	}
	acked := time.Now()
	id := ids[len(ids)-1]
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		defer func() { <-v.sem }()
		// Keep probing after the run ends, for at most 30 s: visibility is the question.
		deadline := acked.Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if v.found(id) {
				v.mu.Lock()
				v.lat = append(v.lat, time.Since(acked))
				v.mu.Unlock()
				return
			}
			time.Sleep(v.cfg.VisibilityPoll)
		}
		v.lost.Add(1)
	}()
}

func (v *visibility) found(id string) bool {
	req, _ := http.NewRequest(http.MethodGet, strings.TrimRight(v.cfg.SearchURL, "/")+"/api/v1/events/"+url.PathEscape(id), nil)
	if v.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+v.cfg.APIKey)
	}
	res, err := v.client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode == http.StatusOK
}

func (v *visibility) wait() { v.wg.Wait() }

func (v *visibility) samples() []time.Duration {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]time.Duration(nil), v.lat...)
}

// runSearch issues "latest 100 events of a random client" at cfg.SearchRate (open loop).
func runSearch(ctx context.Context, cfg Config, client *http.Client, rec *recorder) {
	interval := time.Duration(float64(time.Second) / cfg.SearchRate)
	start := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := 0; ; i++ {
		intended := start.Add(time.Duration(i) * interval)
		if d := time.Until(intended); d > 0 {
			select {
			case <-ctx.Done():
				wg.Wait()
				return
			case <-time.After(d):
			}
		}
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case sem <- struct{}{}:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			q := url.Values{"clientId": {cfg.ClientPrefix + strconv.Itoa(rand.IntN(cfg.Clients))}, "order": {"desc"}, "limit": {"100"}}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(cfg.SearchURL, "/")+"/api/v1/events?"+q.Encode(), nil)
			if cfg.APIKey != "" {
				req.Header.Set("Authorization", "Bearer "+cfg.APIKey)
			}
			res, err := client.Do(req)
			if err != nil {
				if ctx.Err() == nil {
					rec.add(time.Since(intended), "error")
				}
				return
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			rec.add(time.Since(intended), strconv.Itoa(res.StatusCode))
		}()
	}
}
