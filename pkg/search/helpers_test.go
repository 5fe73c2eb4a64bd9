package search_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillway/spillway/api/apitest"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/httpx"
	"github.com/spillway/spillway/pkg/search"
)

// testConfig is the production search configuration with a fixed key and fast stream polling.
func testConfig() config.Search {
	return config.Search{
		DefaultLimit:    100,
		MaxLimit:        1000,
		MaxClientIDs:    100,
		MaxStreams:      10,
		StreamPoll:      50 * time.Millisecond,
		StreamHeartbeat: 15 * time.Second,
		QueryTimeout:    10 * time.Second,
		CursorKey:       "test-cursor-key-0123456789abcdef",
	}
}

// server runs a Service behind the same middleware the binary uses, with its stream poller.
type server struct {
	*httptest.Server
	svc        *search.Service
	reg        *prometheus.Registry
	stopPoller func() // ends Run, as SIGTERM does, and waits for it
}

func startServer(t testing.TB, store search.Store, feed search.Feed, cfg config.Search) *server {
	t.Helper()
	reg := prometheus.NewRegistry()
	svc := search.New(store, feed, cfg, nil, reg)
	r := httpx.NewRouter()
	httpx.Use(r, httpx.WithRequestID, httpx.NewMetrics(reg, "search").Middleware)
	svc.Mount(r)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); svc.Run(ctx) }()
	ts := httptest.NewUnstartedServer(apitest.Handler(t, apitest.Search, r))
	// The binary's read timeout is 30 s; a short one here proves streams outlive it.
	ts.Config.ReadTimeout = 200 * time.Millisecond
	ts.Start()
	stop := func() { cancel(); <-done }
	t.Cleanup(func() {
		stop()
		ts.Close()
	})
	return &server{Server: ts, svc: svc, reg: reg, stopPoller: stop}
}

// get performs a GET and decodes a JSON answer into out (when not nil); it returns the status.
func (s *server) get(t *testing.T, path string, query url.Values, out any) int {
	t.Helper()
	u := s.URL + path
	if query != nil {
		u += "?" + query.Encode()
	}
	res, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("GET %s: content type %q, body %s", u, ct, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("GET %s: %v: %s", u, err, b)
		}
	}
	return res.StatusCode
}

// errorBody is the API's error envelope.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Details []struct {
			Index   *int   `json:"index"` // absent for a parameter's problem
			Field   string `json:"field"`
			Message string `json:"message"`
		} `json:"details"`
	} `json:"error"`
}

func (e errorBody) fields() []string {
	var out []string
	for _, d := range e.Error.Details {
		out = append(out, d.Field)
	}
	return out
}

// apiEvent is an event as the API returns it.
type apiEvent struct {
	ID         string          `json:"id"`
	ClientID   string          `json:"clientId"`
	Type       string          `json:"type"`
	Timestamp  string          `json:"timestamp"`
	IngestedAt string          `json:"ingestedAt"`
	Payload    json.RawMessage `json:"payload"`
}

type listBody struct {
	Events     []apiEvent `json:"events"`
	NextCursor *string    `json:"nextCursor"`
}

// sseMessage is one dispatched block of a Server-Sent Events stream.
type sseMessage struct {
	id   string // the last event id after this block
	data string // empty for id-only blocks
}

// sseStream reads a live stream in the background.
type sseStream struct {
	res      *http.Response
	msgs     chan sseMessage
	comments chan string
}

// openStream subscribes; lastID, when set, is sent as Last-Event-ID. It fails the test unless
// the answer is a 200 event stream.
func (s *server) openStream(t *testing.T, query url.Values, lastID string) *sseStream {
	t.Helper()
	st, status, body := s.tryStream(t, query, lastID)
	if status != http.StatusOK {
		t.Fatalf("stream: status %d: %s", status, body)
	}
	return st
}

func (s *server) tryStream(t *testing.T, query url.Values, lastID string) (*sseStream, int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/api/v1/events/stream?"+query.Encode(), nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return nil, res.StatusCode, string(b)
	}
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("stream content type %q", ct)
	}
	st := &sseStream{res: res, msgs: make(chan sseMessage, 1024), comments: make(chan string, 16)}
	go st.read()
	t.Cleanup(st.close)
	return st, res.StatusCode, ""
}

// read parses the stream as the EventSource algorithm does: "id:" sets the last event id even
// on a block without data.
func (st *sseStream) read() {
	defer close(st.msgs)
	sc := bufio.NewScanner(st.res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var id, data string
	var seen bool
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if seen {
				st.msgs <- sseMessage{id: id, data: data}
			}
			data, seen = "", false
		case strings.HasPrefix(line, ":"):
			select {
			case st.comments <- strings.TrimSpace(line[1:]):
			default:
			}
		case strings.HasPrefix(line, "id: "):
			id, seen = line[4:], true
		case strings.HasPrefix(line, "data: "):
			if data != "" {
				data += "\n"
			}
			data, seen = data+line[6:], true
		}
	}
}

func (st *sseStream) close() { st.res.Body.Close() }

// next returns the next message, failing the test if none comes within a generous bound
// (a guard against hanging, not a latency assertion).
func (st *sseStream) next(t *testing.T) sseMessage {
	t.Helper()
	select {
	case m, ok := <-st.msgs:
		if !ok {
			t.Fatal("stream ended")
		}
		return m
	case <-time.After(30 * time.Second):
		t.Fatal("no stream message within 30s")
	}
	return sseMessage{}
}

// nextEvent skips id-only blocks and decodes the next event.
func (st *sseStream) nextEvent(t *testing.T) (apiEvent, string) {
	t.Helper()
	for {
		m := st.next(t)
		if m.data == "" {
			continue
		}
		var e apiEvent
		if err := json.Unmarshal([]byte(m.data), &e); err != nil {
			t.Fatalf("event %q: %v", m.data, err)
		}
		return e, m.id
	}
}
