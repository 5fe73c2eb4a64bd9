package hostile

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spillway/spillway/api/apitest"
	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/auth"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/event"
)

// The services run with short timeouts and small limits, so that slow-loris cases end in
// seconds and size cases need megabytes, not gigabytes.
const (
	readTimeout       = 2 * time.Second
	readHeaderTimeout = time.Second
	maxHeaderBytes    = 8 << 10
	maxBodyBytes      = 1 << 20
	// hangGuard bounds every exchange: a case that has no answer by then hangs (a failure, not a
	// latency assertion: the slowest legitimate answer is readTimeout away).
	hangGuard = 60 * time.Second
)

// keys are the API keys of the run, by the names corpus cases use in "key".
type keys map[string]string

// TestHostileCorpus runs every case of testdata/hostile against the ingest and search binaries,
// while a polite client posts valid events the whole time, then checks that the services are
// alive, that exactly the polite events and the accepted corpus events are stored, and that
// they are searchable.
func TestHostileCorpus(t *testing.T) {
	cases := loadCorpus(t)
	es := testenv.ES(t)
	k := keys{"ingest": auth.NewKey(), "read": auth.NewKey(), "bound": auth.NewKey(), "admin": auth.NewKey()}
	env := []string{
		"SPILLWAY_ES_URL=" + es.URLs[0],
		"SPILLWAY_ELASTICSEARCH_INDEX_PREFIX=" + es.IndexPrefix,
		"SPILLWAY_AUTH_KEYS=" + strings.Join([]string{
			"hostile:ingest:" + auth.Hash(k["ingest"]),
			"reader:read:" + auth.Hash(k["read"]),
			"bound:ingest:" + auth.Hash(k["bound"]) + ":bound-client",
			"polite:admin:" + auth.Hash(k["admin"]),
		}, ";"),
		"SPILLWAY_HTTP_READ_TIMEOUT=" + readTimeout.String(),
		"SPILLWAY_HTTP_READ_HEADER_TIMEOUT=" + readHeaderTimeout.String(),
		fmt.Sprintf("SPILLWAY_HTTP_MAX_HEADER_BYTES=%d", maxHeaderBytes),
		fmt.Sprintf("SPILLWAY_INGEST_MAX_BODY_BYTES=%d", maxBodyBytes),
		"SPILLWAY_INGEST_MAX_PAYLOAD_BYTES=64KiB",
		"SPILLWAY_INGEST_MAX_EVENTS=1000",
		"SPILLWAY_SEARCH_CURSOR_KEY=hostile-corpus-cursor-key-0123456789",
		"SPILLWAY_SEARCH_STREAM_POLL=100ms",
		"SPILLWAY_LOG_LEVEL=debug",
	}
	ingest := start(t, "cmd/ingest", env)
	search := start(t, "cmd/search", env)

	polite := startPolite(t, ingest.addr, k["admin"])
	var accepted []string // ids of events corpus cases were allowed to store
	now := time.Now()
	for _, service := range []string{"ingest", "search"} { // ingest first: search cases read what it stored
		for _, c := range cases {
			if c.Service != service {
				continue
			}
			addr := ingest.addr
			if service == "search" {
				addr = search.addr
			}
			t.Run(c.Name, func(t *testing.T) {
				res := exchange(t, addr, c, k, now)
				accepted = append(accepted, checkAnswer(t, c, res)...)
			})
		}
	}
	politeIDs := polite.stop(t)

	// Nothing crashed, nothing is stuck.
	for _, p := range []*proc{ingest, search} {
		select {
		case <-p.Exited():
			t.Fatalf("%s exited during the corpus: %v\n%s", p.Name, p.Err(), p.Logs())
		default:
		}
		if res, err := http.Get("http://" + p.addr + "/healthz"); err != nil || res.StatusCode != 200 {
			t.Fatalf("%s /healthz after the corpus: %v %v", p.Name, res, err)
		}
		if strings.Contains(p.Logs(), "panic") {
			t.Errorf("%s logged a panic:\n%s", p.Name, p.Logs())
		}
	}

	// Exactly the polite events and the accepted corpus events are stored: nothing, not even
	// part, of a refused request.
	want := len(politeIDs) + len(accepted)
	if got := countES(t, es, map[string]any{"match_all": map[string]any{}}); got != want {
		t.Errorf("%d events stored under the test prefix, want %d (%d polite + %d accepted by the corpus); clients stored: %v",
			got, want, len(politeIDs), len(accepted), storedClients(t, es))
	}
	if got := countES(t, es, map[string]any{"ids": map[string]any{"values": politeIDs}}); got != len(politeIDs) {
		t.Errorf("%d of %d acknowledged polite events stored", got, len(politeIDs))
	}
	// ... and searchable through the search service.
	var count struct{ Count int }
	getJSON(t, search.addr, "/api/v1/events/count?clientId=polite", k["read"], &count)
	if count.Count != len(politeIDs) {
		t.Errorf("search counts %d polite events, %d were acknowledged", count.Count, len(politeIDs))
	}
	for _, id := range accepted {
		var e struct{ ID, Timestamp string }
		getJSON(t, search.addr, "/api/v1/events/"+id, k["admin"], &e)
		if e.ID != id || !strings.HasSuffix(e.Timestamp, "Z") {
			t.Errorf("accepted event %s reads back as %+v", id, e)
		}
	}
	t.Logf("%d cases; %d polite events posted alongside, all stored and searchable; %d events accepted by the corpus; %d stored in all",
		len(cases), len(politeIDs), len(accepted), want)
}

// result is what came back for one case.
type result struct {
	status  int // 0: the connection closed without an answer
	header  http.Header
	body    []byte
	elapsed time.Duration
	hung    bool
}

// exchange sends a case's request on a fresh connection, written byte for byte (so that paths,
// headers and bodies arrive exactly as the corpus has them), and reads the answer.
func exchange(t *testing.T, addr string, c *Case, k keys, now time.Time) result {
	t.Helper()
	body, err := c.body(now)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	_ = conn.SetDeadline(start.Add(hangGuard))

	key := c.Key
	if key == "" {
		key = map[string]string{"ingest": "ingest", "search": "read"}[c.Service]
	}
	hdr := [][2]string{{"Host", addr}}
	if key != "none" {
		hdr = append(hdr, [2]string{"Authorization", "Bearer " + k[key]})
	}
	if c.Service == "ingest" {
		hdr = append(hdr, [2]string{"Content-Type", "application/json"})
	}
	if c.Gzip {
		hdr = append(hdr, [2]string{"Content-Encoding", "gzip"})
	}
	switch {
	case c.Chunked:
		hdr = append(hdr, [2]string{"Transfer-Encoding", "chunked"})
	case c.Attack == "slow_body" || c.Attack == "truncated_body":
		hdr = append(hdr, [2]string{"Content-Length", fmt.Sprint(len(body) + 1000)}) // promises more than comes
	case body != nil || c.Method == "POST":
		hdr = append(hdr, [2]string{"Content-Length", fmt.Sprint(len(body))})
	}
	hdr = append(hdr, [2]string{"Connection", "close"})
	for _, h := range c.Headers {
		hdr = setHeader(hdr, h[0], h[1])
	}

	target := c.Path
	if c.Query != "" {
		target += "?" + c.Query
	}
	var head bytes.Buffer
	fmt.Fprintf(&head, "%s %s HTTP/1.1\r\n", c.Method, target)
	for _, h := range hdr {
		fmt.Fprintf(&head, "%s: %s\r\n", h[0], h[1])
	}

	answered := make(chan result, 1)
	go func() {
		br := bufio.NewReader(conn)
		res, err := http.ReadResponse(br, nil)
		r := result{elapsed: time.Since(start)}
		if err != nil {
			var ne net.Error
			r.hung = errors.As(err, &ne) && ne.Timeout()
			answered <- r
			return
		}
		r.status, r.header = res.StatusCode, res.Header
		r.body, _ = io.ReadAll(io.LimitReader(res.Body, 1<<20))
		res.Body.Close()
		answered <- r
	}()

	switch c.Attack {
	case "slow_headers":
		// The request line, then one header line now and then: never the blank line.
		_, _ = conn.Write([]byte(fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\n", c.Method, target, addr)))
		for i := 0; ; i++ {
			select {
			case r := <-answered:
				return r
			case <-time.After(300 * time.Millisecond):
			}
			if _, err := fmt.Fprintf(conn, "X-Slow-%d: x\r\n", i); err != nil {
				return <-answered
			}
		}
	case "slow_body":
		head.WriteString("\r\n")
		_, _ = conn.Write(head.Bytes())
		for i := 0; i < len(body); i++ {
			select {
			case r := <-answered:
				return r
			case <-time.After(300 * time.Millisecond):
			}
			if _, err := conn.Write(body[i : i+1]); err != nil {
				break
			}
		}
		return <-answered
	case "truncated_body":
		head.WriteString("\r\n")
		head.Write(body)
		_, _ = conn.Write(head.Bytes())
		_ = conn.(*net.TCPConn).CloseWrite() // the promised rest never comes
		return <-answered
	}
	head.WriteString("\r\n")
	if c.Chunked {
		_, _ = conn.Write(head.Bytes())
		_, _ = conn.Write(body) // the corpus writes the chunked framing itself
	} else {
		head.Write(body)
		_, _ = conn.Write(head.Bytes())
	}
	return <-answered
}

// setHeader replaces the header named name (any case) with value, removes it for an empty
// value, or appends it.
func setHeader(hdr [][2]string, name, value string) [][2]string {
	for i, h := range hdr {
		if strings.EqualFold(h[0], name) {
			if value == "" {
				return append(hdr[:i:i], hdr[i+1:]...)
			}
			hdr[i][1] = value
			return hdr
		}
	}
	if value == "" {
		return hdr
	}
	return append(hdr, [2]string{name, value})
}

// checkAnswer compares the answer with the case's expectation and returns the ids a 201 stored.
func checkAnswer(t *testing.T, c *Case, r result) []string {
	t.Helper()
	if r.hung {
		t.Fatalf("no answer within %s: the server hangs", hangGuard)
	}
	if c.Attack != "" {
		t.Logf("%s: answered %d after %v", c.Attack, r.status, r.elapsed.Round(time.Millisecond))
	}
	t.Logf("%d %s", r.status, tail(strings.TrimSpace(string(r.body)), 300))
	if r.status >= 500 {
		t.Fatalf("5xx for a client's mistake: %d %s", r.status, r.body)
	}
	if r.status != c.Expect.Status {
		t.Fatalf("status %d, want %d: %s", r.status, c.Expect.Status, r.body)
	}
	if r.status == 0 {
		return nil
	}
	// Every answer, expected or not, as api/openapi.yaml describes it (Go's own plain-text
	// answers included: Check knows them).
	if err := apitest.Check(c.Service, caseRequest(c), r.status, r.header, r.body); err != nil {
		t.Errorf("%v", err)
	}
	if c.Expect.Plain {
		return nil
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type %q: %s", ct, r.body)
	}
	if r.status < 300 {
		for _, s := range c.Expect.Contains {
			if !bytes.Contains(r.body, []byte(s)) {
				t.Errorf("answer lacks %s: %s", s, r.body)
			}
		}
		if want := c.Expect.Count; want != nil {
			var got struct{ Count *int64 }
			if err := json.Unmarshal(r.body, &got); err != nil || got.Count == nil || *got.Count != *want {
				t.Errorf("count: want %d: %s", *want, r.body)
			}
		}
		var created struct{ IDs []string }
		if r.status == http.StatusCreated {
			if err := json.Unmarshal(r.body, &created); err != nil || len(created.IDs) == 0 {
				t.Fatalf("201 without ids: %s", r.body)
			}
		}
		return created.IDs
	}
	var env struct {
		Error struct {
			Code    string
			Message string
			Details []event.FieldError
		}
	}
	if err := json.Unmarshal(r.body, &env); err != nil || env.Error.Code == "" || env.Error.Message == "" {
		t.Fatalf("not the error envelope: %s", r.body)
	}
	if c.Expect.Code != "" && env.Error.Code != c.Expect.Code {
		t.Errorf("code %q, want %q: %s", env.Error.Code, c.Expect.Code, r.body)
	}
	text := env.Error.Message
	named := false
	for _, d := range env.Error.Details {
		text += " | " + d.Field + ": " + d.Message
		named = named || d.Field == c.Expect.Field
	}
	if c.Expect.Field != "" && !named && !strings.Contains(env.Error.Message, c.Expect.Field) {
		t.Errorf("the answer does not name the field %q: %s", c.Expect.Field, r.body)
	}
	if c.Expect.Message != "" && !strings.Contains(text, c.Expect.Message) {
		t.Errorf("the answer does not say %q: %s", c.Expect.Message, r.body)
	}
	if (r.status == 429 || r.status == 503) && r.header.Get("Retry-After") == "" {
		t.Errorf("%d without Retry-After", r.status)
	}
	return nil
}

// caseRequest is the case's request line as a request for apitest.Check, which reads only its
// method and URL. A target Go's URL parser refuses (the corpus has some) keeps its raw path.
func caseRequest(c *Case) *http.Request {
	u, err := url.ParseRequestURI(c.Path)
	if err != nil {
		u = &url.URL{Path: c.Path}
	}
	u.RawQuery = c.Query
	return &http.Request{Method: c.Method, URL: u, Header: http.Header{}}
}

// polite posts valid events (5 per request, one request every 20 ms) for as long as the corpus
// runs, as another client of the same service would.
type polite struct {
	stopc chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	ids   []string
	errs  []string
}

func startPolite(t *testing.T, addr, key string) *polite {
	p := &polite{stopc: make(chan struct{}), done: make(chan struct{})}
	post := func(i int) {
		var b strings.Builder
		ids := make([]string, 5)
		for j := range ids {
			ids[j] = fmt.Sprintf("polite-%d-%d", i, j)
			fmt.Fprintf(&b, `{"id":%q,"clientId":"polite","type":"valid","payload":{"i":%d}}`+"\n", ids[j], i)
		}
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/api/v1/events", strings.NewReader(b.String()))
		req.Header.Set("Content-Type", "application/x-ndjson")
		req.Header.Set("Authorization", "Bearer "+key)
		res, err := http.DefaultClient.Do(req)
		p.mu.Lock()
		defer p.mu.Unlock()
		if err != nil {
			p.errs = append(p.errs, err.Error())
			return
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusCreated {
			p.errs = append(p.errs, fmt.Sprintf("%d %s", res.StatusCode, body))
			return
		}
		p.ids = append(p.ids, ids...)
	}
	post(0) // before the corpus
	go func() {
		defer close(p.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 1; ; i++ {
			select {
			case <-p.stopc:
				post(i) // after the corpus
				return
			case <-tick.C:
				post(i)
			}
		}
	}()
	return p
}

// stop ends the polite client and returns the ids of its acknowledged events; any refusal of a
// valid request fails the test.
func (p *polite) stop(t *testing.T) []string {
	t.Helper()
	close(p.stopc)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.errs) > 0 {
		t.Errorf("%d valid requests failed while the corpus ran, e.g. %s", len(p.errs), p.errs[0])
	}
	if len(p.ids) < 10 {
		t.Errorf("only %d polite events acknowledged: the concurrency claim is empty", len(p.ids))
	}
	return p.ids
}

func getJSON(t *testing.T, addr, path, key string, out any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	req.Header.Set("X-API-Key", key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || json.Unmarshal(b, out) != nil {
		t.Errorf("GET %s: %d %s", path, res.StatusCode, b)
	}
}

// countES counts documents of the test prefix matching query, after a refresh, directly in
// Elasticsearch.
func countES(t *testing.T, es config.Elasticsearch, query map[string]any) int {
	t.Helper()
	base := es.URLs[0] + "/" + es.IndexPrefix + "-*"
	if res, err := http.Post(base+"/_refresh?allow_no_indices=true", "application/json", nil); err == nil {
		res.Body.Close()
	}
	q, _ := json.Marshal(map[string]any{"query": query})
	res, err := http.Post(base+"/_count?allow_no_indices=true", "application/json", bytes.NewReader(q))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out struct{ Count int }
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || res.StatusCode != 200 {
		t.Fatalf("count: %d %v", res.StatusCode, err)
	}
	return out.Count
}

// storedClients summarises what is stored by clientId, to explain a wrong count.
func storedClients(t *testing.T, es config.Elasticsearch) map[string]int {
	q := `{"size":0,"aggs":{"c":{"terms":{"field":"clientId","size":100}}}}`
	res, err := http.Post(es.URLs[0]+"/"+es.IndexPrefix+"-*/_search?allow_no_indices=true", "application/json", strings.NewReader(q))
	if err != nil {
		return nil
	}
	defer res.Body.Close()
	var out struct {
		Aggregations struct {
			C struct {
				Buckets []struct {
					Key      string
					DocCount int `json:"doc_count"`
				}
			}
		}
	}
	_ = json.NewDecoder(res.Body).Decode(&out)
	m := map[string]int{}
	for _, b := range out.Aggregations.C.Buckets {
		m[b.Key] = b.DocCount
	}
	return m
}

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBuilds()
	os.Exit(code)
}

// proc is a running service binary.
type proc struct {
	*testenv.Process
	addr string
}

// start runs a service binary (built once per test run) on a free loopback port and waits
// until it is ready.
func start(t *testing.T, pkg string, env []string) *proc {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	env = append(append(os.Environ(), env...), "SPILLWAY_HTTP_ADDR="+addr)
	p := &proc{Process: testenv.StartProcess(t, path.Base(pkg), testenv.Build(t, pkg), env), addr: addr}
	p.WaitHTTP(t, "http://"+addr+"/readyz", time.Minute)
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
