package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Live readers (the benchmark's S9): one Server-Sent Events stream of GET /api/v1/events/stream
// per client, each recording every event it receives and when. Delivery latency runs from the
// event's own timestamp — the generator stamps each request when it builds it, just before
// posting it — to the moment the event's data line was read: post to receipt, both on this
// process's clock.

// StreamConfig describes the live readers.
type StreamConfig struct {
	SearchURL string
	APIKey    string
	// Streams is how many streams are opened, one per client: ClientPrefix+"0" to
	// ClientPrefix+(Streams-1), the clients a Config with Clients = Streams posts for.
	Streams      int
	ClientPrefix string // default "client-", as Config's
	// Clock reads the receipt times (default: the wall clock). Tests use a fake one.
	Clock func() time.Time
}

// Streams are open live readers. Open them with OpenStreams and end them with Close; the
// methods are safe for concurrent use.
type Streams struct {
	cfg    StreamConfig
	client *http.Client
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ended  atomic.Int64 // streams that ended before Close

	mu          sync.Mutex
	arrived     chan struct{} // closed and replaced on every delivery: Await waits on it
	got         map[string]bool
	lat         []time.Duration
	duplicates  int64
	wrongClient int64
	badLines    int64
}

// StreamResult is what the readers saw, checked against the acknowledged events.
type StreamResult struct {
	Streams int `json:"streams"`
	// Delivered counts distinct events received.
	Delivered int64 `json:"delivered"`
	// Duplicates counts events received more than once; WrongClient events received by a
	// stream of another client; Missing acknowledged events never received.
	Duplicates  int64 `json:"duplicates"`
	WrongClient int64 `json:"wrong_client"`
	Missing     int64 `json:"missing"`
	// Unacknowledged counts events received that no acknowledgement named: stored, but their
	// request failed afterwards (a timeout, for instance). Not an error of the stream.
	Unacknowledged int64 `json:"unacknowledged"`
	// Ended counts streams the server closed before the run ended; Malformed data lines that
	// were not an event.
	Ended     int64       `json:"ended"`
	Malformed int64       `json:"malformed"`
	Latency   Percentiles `json:"delivery_ms"`
}

// ExactlyOnce reports whether every acknowledged event arrived exactly once, on its client's
// stream, and every stream stayed open.
func (r StreamResult) ExactlyOnce() bool {
	return r.Duplicates == 0 && r.WrongClient == 0 && r.Missing == 0 && r.Ended == 0 && r.Malformed == 0
}

func (c *StreamConfig) defaults() {
	if c.ClientPrefix == "" {
		c.ClientPrefix = "client-"
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
}

// OpenStreams subscribes cfg.Streams readers and returns once every one has received its first
// message (the subscription's token), so that every event posted afterwards is one they must
// receive.
func OpenStreams(ctx context.Context, cfg StreamConfig) (*Streams, error) {
	cfg.defaults()
	if cfg.SearchURL == "" || cfg.Streams <= 0 {
		return nil, fmt.Errorf("loadgen: streams need a search URL and a positive count")
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Streams{cfg: cfg, cancel: cancel, got: map[string]bool{}, arrived: make(chan struct{}),
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Streams, ResponseHeaderTimeout: 30 * time.Second}}}
	subscribed := make(chan error, cfg.Streams)
	sem := make(chan struct{}, 32) // subscriptions in flight: a thousand at once would be a burst no reader makes
	for i := 0; i < cfg.Streams; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			s.Close()
			return nil, ctx.Err()
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.follow(runCtx, cfg.ClientPrefix+strconv.Itoa(i), func(err error) { <-sem; subscribed <- err })
		}()
	}
	for i := 0; i < cfg.Streams; i++ {
		select {
		case err := <-subscribed:
			if err != nil {
				s.Close()
				return nil, err
			}
		case <-ctx.Done():
			s.Close()
			return nil, ctx.Err()
		}
	}
	return s, nil
}

// follow reads one client's stream until it ends; ready is called once, with nil after the
// first message or with the error that prevented it.
func (s *Streams) follow(ctx context.Context, client string, ready func(error)) {
	done := false // ready was called
	signal := func(err error) {
		if !done {
			done = true
			ready(err)
		}
	}
	u := strings.TrimRight(s.cfg.SearchURL, "/") + "/api/v1/events/stream?" + url.Values{"clientId": {client}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		signal(err)
		return
	}
	if s.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+s.cfg.APIKey)
	}
	res, err := s.client.Do(req)
	if err != nil {
		signal(fmt.Errorf("stream of %s: %w", client, err))
		return
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 300))
		signal(fmt.Errorf("stream of %s: status %d: %s", client, res.StatusCode, bytes.TrimSpace(b)))
		return
	}
	br := bufio.NewReader(res.Body)
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			if !done {
				signal(fmt.Errorf("stream of %s ended before its first message: %w", client, err))
			} else if ctx.Err() == nil {
				s.ended.Add(1)
			}
			return
		}
		switch {
		case bytes.HasPrefix(line, []byte("id: ")):
			signal(nil)
		case bytes.HasPrefix(line, []byte("data: ")):
			s.record(client, line[len("data: "):])
		}
	}
}

// record accounts for one event received by client's stream.
func (s *Streams) record(client string, data []byte) {
	now := s.cfg.Clock()
	var e struct {
		ID        string `json:"id"`
		ClientID  string `json:"clientId"`
		Timestamp string `json:"timestamp"`
	}
	err := json.Unmarshal(data, &e)
	ts, terr := time.Parse(time.RFC3339Nano, e.Timestamp)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err != nil || terr != nil || e.ID == "":
		s.badLines++
		return
	case s.got[e.ID]:
		s.duplicates++
	default:
		s.got[e.ID] = true
		s.lat = append(s.lat, now.Sub(ts))
	}
	if e.ClientID != client {
		s.wrongClient++
	}
	close(s.arrived)
	s.arrived = make(chan struct{})
}

// Await returns once every id in ids has been received, or with ctx's error.
func (s *Streams) Await(ctx context.Context, ids []string) error {
	next := 0
	for {
		s.mu.Lock()
		for next < len(ids) && s.got[ids[next]] {
			next++
		}
		arrived := s.arrived
		s.mu.Unlock()
		if next == len(ids) {
			return nil
		}
		select {
		case <-arrived:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Result checks what was received against the acknowledged ids.
func (s *Streams) Result(acked []string) StreamResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := StreamResult{Streams: s.cfg.Streams, Delivered: int64(len(s.got)), Duplicates: s.duplicates, WrongClient: s.wrongClient,
		Ended: s.ended.Load(), Malformed: s.badLines, Latency: Summarize(s.lat)}
	ack := make(map[string]bool, len(acked))
	for _, id := range acked {
		ack[id] = true
		if !s.got[id] {
			r.Missing++
		}
	}
	for id := range s.got {
		if !ack[id] {
			r.Unacknowledged++
		}
	}
	return r
}

// Close ends every stream and waits for the readers.
func (s *Streams) Close() {
	s.cancel()
	s.wg.Wait()
	s.client.CloseIdleConnections()
}
