package hostile

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// corpusDir holds one descriptor (NAME.json) per case, and raw bodies (NAME.body) where JSON
// cannot hold them (invalid UTF-8, NUL bytes).
const corpusDir = "../testdata/hostile"

// Case is one hostile request, as described in the corpus.
type Case struct {
	Name    string      `json:"-"`
	About   string      `json:"about"`    // what makes it hostile, and why the expected answer is right
	Service string      `json:"service"`  // ingest or search
	Method  string      `json:"method"`   // default POST (ingest), GET (search)
	Path    string      `json:"path"`     // request target path, sent verbatim (default /api/v1/events)
	Query   string      `json:"query"`    // raw query string, sent verbatim
	Headers [][2]string `json:"headers"`  // sent in order; a pair with an empty value removes a default header
	Key     string      `json:"key"`      // ingest, read, bound, none (default: the service's role)
	Body    *string     `json:"body"`     // inline body ({{now}} and {{now:+05:30}} are replaced)
	Parts   []Part      `json:"generate"` // a generated body, written part after part
	Gzip    bool        `json:"gzip"`     // gzip the body and send Content-Encoding: gzip
	Chunked bool        `json:"chunked"`  // send the body with Transfer-Encoding: chunked
	Attack  string      `json:"attack"`   // slow_body, slow_headers, truncated_body, or empty
	Expect  Expect      `json:"expect"`
	Fuzz    *bool       `json:"fuzz"` // seed the fuzz corpus with it (default: small literal bodies)
	bodyRaw []byte      // NAME.body, when present
}

// Part is one piece of a generated body: Text written Times times (default once), with {{i}}
// replaced by the repetition's index.
type Part struct {
	Text  string `json:"text"`
	Times int    `json:"times"`
}

// Expect is what the services must answer.
type Expect struct {
	// Status is the HTTP status; 0 means the server closes the connection without answering
	// (net/http's answer to a client that does not finish its headers in time).
	Status int `json:"status"`
	// Code is the error envelope's code.
	Code string `json:"code"`
	// Field must be named by a detail of the envelope (or, with Message, appear in the message).
	Field string `json:"field"`
	// Message must appear in the envelope's message or one of its details.
	Message string `json:"message"`
	// Plain: net/http answers before any handler runs (431, malformed requests), in text/plain.
	Plain bool `json:"plain"`
	// Contains must appear in a successful body (search of literal values).
	Contains []string `json:"contains"`
	// Count, when set, is the number a successful count answer must hold ({"count": N}),
	// compared as a number: a substring would let {"count":1873} pass for 1.
	Count *int64 `json:"count"`
}

func loadCorpus(t *testing.T) []*Case {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(corpusDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus in %s: %v", corpusDir, err)
	}
	sort.Strings(files)
	var out []*Case
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		c := &Case{Name: strings.TrimSuffix(filepath.Base(f), ".json")}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(c); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if raw, err := os.ReadFile(strings.TrimSuffix(f, ".json") + ".body"); err == nil {
			c.bodyRaw = raw
		}
		if err := c.check(); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, c)
	}
	return out
}

func (c *Case) check() error {
	switch c.Service {
	case "ingest":
		if c.Method == "" {
			c.Method = "POST"
		}
	case "search":
		if c.Method == "" {
			c.Method = "GET"
		}
	default:
		return fmt.Errorf("service must be ingest or search, got %q", c.Service)
	}
	if c.Path == "" {
		c.Path = "/api/v1/events"
	}
	if c.About == "" {
		return fmt.Errorf("about is required: say what is hostile and why the answer is right")
	}
	sources := 0
	for _, has := range []bool{c.Body != nil, c.bodyRaw != nil, len(c.Parts) > 0} {
		if has {
			sources++
		}
	}
	if sources > 1 {
		return fmt.Errorf("give one of body, NAME.body and generate")
	}
	switch c.Attack {
	case "", "slow_body", "slow_headers", "truncated_body":
	default:
		return fmt.Errorf("unknown attack %q", c.Attack)
	}
	if c.Expect.Status == 0 && c.Attack != "slow_headers" {
		return fmt.Errorf("expect.status is required")
	}
	if c.Expect.Status >= 500 {
		return fmt.Errorf("a hostile request must never get a 5xx")
	}
	for _, s := range c.Expect.Contains {
		if strings.Contains(s, `"count"`) {
			return fmt.Errorf("expect.contains %q: compare counts with expect.count, as a number", s)
		}
	}
	return nil
}

// literalBody is the body as written in the corpus (no generation, no gzip), for fuzz seeds.
func (c *Case) literalBody() ([]byte, bool) {
	switch {
	case c.bodyRaw != nil:
		return c.bodyRaw, true
	case c.Body != nil && !strings.Contains(*c.Body, "{{"):
		return []byte(*c.Body), true
	}
	return nil, false
}

// body renders the request body.
func (c *Case) body(now time.Time) ([]byte, error) {
	var buf bytes.Buffer
	var w io.Writer = &buf
	var zw *gzip.Writer
	if c.Gzip {
		zw = gzip.NewWriter(&buf)
		w = zw
	}
	switch {
	case c.bodyRaw != nil:
		_, _ = w.Write(c.bodyRaw)
	case c.Body != nil:
		_, _ = io.WriteString(w, expand(*c.Body, now))
	default:
		for _, p := range c.Parts {
			n := max(p.Times, 1)
			indexed := strings.Contains(p.Text, "{{i}}")
			chunk := []byte(p.Text)
			if !indexed && n > 1 && len(chunk) < 64<<10 {
				// Write big runs in 64 KiB blocks: a 100 MB gzip bomb is then quick to build.
				block := bytes.Repeat(chunk, max(1, (64<<10)/len(chunk)))
				per := len(block) / len(chunk)
				for n >= per {
					_, _ = w.Write(block)
					n -= per
				}
			}
			for i := 0; i < n; i++ {
				if indexed {
					_, _ = io.WriteString(w, strings.ReplaceAll(p.Text, "{{i}}", strconv.Itoa(i)))
				} else {
					_, _ = w.Write(chunk)
				}
			}
		}
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

// expand replaces {{now}} (UTC, RFC 3339 with nanoseconds) and {{now:±hh:mm}} (the same instant
// in that zone).
func expand(s string, now time.Time) string {
	for {
		i := strings.Index(s, "{{now")
		if i < 0 {
			return s
		}
		j := strings.Index(s[i:], "}}")
		if j < 0 {
			return s
		}
		spec := s[i+5 : i+j]
		t := now.UTC()
		if zone, ok := strings.CutPrefix(spec, ":"); ok {
			z, err := time.Parse("-07:00", zone)
			if err == nil {
				_, off := z.Zone()
				t = now.In(time.FixedZone(zone, off))
			}
		}
		s = s[:i] + t.Format(time.RFC3339Nano) + s[i+j+2:]
	}
}
