package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/esstore"
)

// A template replaced by an older version (or deleted) while ingest runs is put back by the
// readiness check, which reports it until then; events keep being accepted with the right
// mapping.
func TestReadinessRestoresAnOutdatedTemplate(t *testing.T) {
	es := testenv.ES(t)
	cfg := testenv.LoadConfig(t, config.RoleIngest, "--http.addr", "127.0.0.1:0",
		"--elasticsearch.urls", es.URLs[0], "--elasticsearch.index_prefix", es.IndexPrefix)
	s := serveWired(t, cfg)
	url := es.URLs[0] + "/_index_template/" + es.IndexPrefix + "-template"
	version := func() int {
		t.Helper()
		res, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out struct {
			IndexTemplates []struct {
				IndexTemplate map[string]any `json:"index_template"`
			} `json:"index_templates"`
		}
		if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		if len(out.IndexTemplates) != 1 {
			return 0
		}
		meta, _ := out.IndexTemplates[0].IndexTemplate["_meta"].(map[string]any)
		v, _ := meta["template_version"].(float64)
		return int(v)
	}
	if v := version(); v != esstore.TemplateVersion() {
		t.Fatalf("installed version %d, want %d", v, esstore.TemplateVersion())
	}

	for i, tc := range []struct{ name, method, body string }{
		{"older", http.MethodPut, `{"index_patterns":["` + es.IndexPrefix + `-*"],"priority":200,"template":{"mappings":{"dynamic":"strict","properties":{"id":{"type":"keyword"}}}},"_meta":{"template_version":1}}`},
		{"deleted", http.MethodDelete, ""},
	} {
		req, _ := http.NewRequest(tc.method, url, strings.NewReader(tc.body))
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("%s: %v %v", tc.name, res, err)
		}
		res.Body.Close()
		// Readiness results are cached for two seconds: poll until a check has run.
		deadline := time.Now().Add(time.Minute)
		for version() != esstore.TemplateVersion() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the template is still at version %d; logs:\n%s", tc.name, version(), s.logs.String())
			}
			_, _, _ = s.do(t, http.MethodGet, "/readyz", "", "")
			time.Sleep(200 * time.Millisecond)
		}
		if code, _, body := s.do(t, http.MethodGet, "/readyz", "", ""); code != http.StatusOK {
			t.Fatalf("%s: readyz %d %s", tc.name, code, body)
		}
		if strings.Count(s.logs.String(), "index template missing or outdated") < i+1 {
			t.Fatalf("%s: the reinstall was not logged", tc.name)
		}
		id := testenv.Name(tc.name)
		if code, _, body := s.do(t, http.MethodPost, "/api/v1/events?wait=searchable", "",
			`{"id":"`+id+`","clientId":"c","payload":{"a":1}}`+"\n"); code != http.StatusCreated {
			t.Fatalf("%s: post after reinstall: %d %s", tc.name, code, body)
		}
	}
}
