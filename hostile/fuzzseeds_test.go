package hostile

import (
	"bytes"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "write the corpus's fuzz seeds into pkg/event and pkg/search testdata")

// Seed directories of the decoders' fuzz tests; files named hostile-<case> come from the corpus.
const (
	decodeSeeds = "../pkg/event/testdata/fuzz/FuzzDecode"
	cursorSeeds = "../pkg/search/testdata/fuzz/FuzzCursor"
	seedPrefix  = "hostile-"
	// maxSeedBytes keeps megabyte bodies (generated bombs) out of the seed corpus: the fuzzer
	// mutates seeds, and it finds nothing in a megabyte that it does not find in a kilobyte.
	maxSeedBytes = 16 << 10
)

// TestFuzzSeedsIncludeCorpus keeps FuzzDecode's seeds in step with the corpus's request bodies
// and FuzzCursor's with its cursors and Last-Event-IDs, so `go test` replays every hostile input
// through the decoders directly and `go test -fuzz` starts from them. Run with -update after
// changing the corpus.
func TestFuzzSeedsIncludeCorpus(t *testing.T) {
	want := map[string]map[string][]byte{decodeSeeds: {}, cursorSeeds: {}}
	for _, c := range loadCorpus(t) {
		for dir, seed := range seeds(c) {
			want[dir][seedPrefix+c.Name] = seed
		}
	}
	for dir, files := range want {
		if len(files) == 0 {
			t.Fatalf("the corpus yields no seeds for %s", dir)
		}
		have, _ := filepath.Glob(filepath.Join(dir, seedPrefix+"*"))
		for _, p := range have {
			if _, ok := files[filepath.Base(p)]; !ok {
				if *update {
					_ = os.Remove(p)
					continue
				}
				t.Errorf("%s: no corpus case yields it any more (run go test ./hostile -run TestFuzzSeeds -update)", p)
			}
		}
		names := make([]string, 0, len(files))
		for n := range files {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			p := filepath.Join(dir, n)
			got, err := os.ReadFile(p)
			if err == nil && bytes.Equal(got, files[n]) {
				continue
			}
			if *update {
				if err := os.WriteFile(p, files[n], 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			t.Errorf("%s is missing or stale (run go test ./hostile -run TestFuzzSeeds -update)", p)
		}
		t.Logf("%s: %d seeds from the corpus", dir, len(files))
	}
}

// seeds returns the fuzz seed files a case contributes, by directory.
func seeds(c *Case) map[string][]byte {
	out := map[string][]byte{}
	switch c.Service {
	case "ingest":
		body, ok := c.literalBody()
		if c.Fuzz != nil {
			ok = ok && *c.Fuzz
		}
		if !ok || c.Gzip || c.Chunked || len(body) > maxSeedBytes {
			return out
		}
		ndjson := false
		for _, h := range c.Headers {
			ndjson = ndjson || strings.EqualFold(h[0], "Content-Type") && strings.Contains(h[1], "ndjson")
		}
		out[decodeSeeds] = []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nbool(%v)\n", body, ndjson))
	case "search":
		var v string
		if q, err := url.ParseQuery(c.Query); err == nil && q.Get("cursor") != "" {
			v = q.Get("cursor")
		}
		for _, h := range c.Headers {
			if strings.EqualFold(h[0], "Last-Event-ID") {
				v = h[1]
			}
		}
		if v != "" && len(v) <= maxSeedBytes {
			out[cursorSeeds] = []byte(fmt.Sprintf("go test fuzz v1\nstring(%q)\n", v))
		}
	}
	return out
}
