package esstore_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/mappings"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/event"
)

func TestTemplateFileParsesAndIsPatched(t *testing.T) {
	var raw map[string]any
	if err := json.Unmarshal(mappings.EventsTemplate, &raw); err != nil {
		t.Fatalf("mappings/elasticsearch/events-template.json: %v", err)
	}
	cfg := testenv.DefaultES("http://127.0.0.1:1")
	cfg.IndexPrefix, cfg.Shards, cfg.Replicas, cfg.RefreshInterval = "audit", 3, "1", 2*time.Second
	s, err := esstore.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := s.Template()
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		IndexPatterns []string `json:"index_patterns"`
		Template      struct {
			Settings struct {
				Index map[string]any `json:"index"`
			} `json:"settings"`
			Mappings struct {
				Dynamic    string                    `json:"dynamic"`
				Properties map[string]map[string]any `json:"properties"`
			} `json:"mappings"`
			Aliases map[string]any `json:"aliases"`
		} `json:"template"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.IndexPatterns) != 1 || got.IndexPatterns[0] != "audit-*" {
		t.Errorf("patterns %v", got.IndexPatterns)
	}
	if _, ok := got.Template.Aliases["audit"]; !ok || len(got.Template.Aliases) != 1 {
		t.Errorf("aliases %v", got.Template.Aliases)
	}
	idx := got.Template.Settings.Index
	if idx["number_of_shards"] != float64(3) || idx["number_of_replicas"] != "1" || idx["refresh_interval"] != "2000ms" {
		t.Errorf("settings %v", idx)
	}
	if _, ok := idx["auto_expand_replicas"]; ok {
		t.Errorf("auto_expand_replicas kept beside number_of_replicas")
	}
	want := map[string]string{"id": "keyword", "clientId": "keyword", "type": "keyword", "@timestamp": "date_nanos", "ingestedAt": "date_nanos", "payload": "flattened"}
	for f, typ := range want {
		if got.Template.Mappings.Properties[f]["type"] != typ {
			t.Errorf("field %s: %v, want %s", f, got.Template.Mappings.Properties[f], typ)
		}
	}
	if got.Template.Mappings.Dynamic != "strict" {
		t.Errorf("dynamic = %q", got.Template.Mappings.Dynamic)
	}
}

func TestIndexNames(t *testing.T) {
	s, _ := esstore.New(testenv.DefaultES("http://127.0.0.1:1"), nil)
	ts := time.Date(2026, 3, 4, 23, 59, 0, 0, time.FixedZone("X", -2*3600))
	if got := s.IndexFor(ts); got != "events-2026.03.05" {
		t.Errorf("IndexFor = %s", got)
	}
	if d, ok := s.DayOf("events-2026.03.05"); !ok || !d.Equal(time.Date(2026, 3, 5, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("DayOf = %v %v", d, ok)
	}
	if _, ok := s.DayOf("eventsx-2026.03.05"); ok {
		t.Error("DayOf accepted a foreign index")
	}
}

func TestLiveTemplateWriteRead(t *testing.T) {
	cfg := testenv.ES(t)
	ctx := testenv.Context(t, time.Minute)
	s, err := esstore.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckTemplate(ctx); err == nil {
		t.Fatal("CheckTemplate passed before install")
	}
	for i := 0; i < 2; i++ { // idempotent
		if err := s.InstallTemplate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CheckTemplate(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Version(ctx); err != nil || !strings.HasPrefix(v, "8.") && !strings.HasPrefix(v, "9.") {
		t.Fatalf("version %q %v", v, err)
	}

	ts := time.Date(2026, 5, 6, 7, 8, 9, 123456789, time.UTC)
	e := event.Event{ID: "smoke-1", ClientID: "client-1", Type: "click", Timestamp: ts, IngestedAt: ts.Add(time.Second),
		Payload: json.RawMessage(`{"a":{"b":[1,2,{"c":"ü"}]},"big":123456789012345678901234567890}`)}
	created, err := testenv.Put(ctx, s, e)
	if err != nil || !created {
		t.Fatalf("put: %v %v", created, err)
	}
	created, err = testenv.Put(ctx, s, e)
	if err != nil || created {
		t.Fatalf("second put: created=%v err=%v, want a duplicate", created, err)
	}
	got, err := s.Get(ctx, "smoke-1", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if got.ClientID != "client-1" || got.Type != "click" || !got.Timestamp.Equal(ts.Truncate(time.Microsecond)) {
		t.Fatalf("got %+v", got)
	}
	if string(got.Payload) != string(e.Payload) {
		t.Fatalf("payload %s, want %s", got.Payload, e.Payload)
	}
	if _, err := s.Get(ctx, "nope", time.Time{}); !errors.Is(err, event.ErrNotFound) {
		t.Fatalf("get missing: %v", err)
	}

	// The live index was created from the template: it has the mapping and the alias.
	index := s.IndexFor(ts)
	res, err := http.Get(cfg.URLs[0] + "/" + index)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var live map[string]struct {
		Aliases  map[string]any `json:"aliases"`
		Mappings struct {
			Properties map[string]map[string]any `json:"properties"`
		} `json:"mappings"`
		Settings struct {
			Index map[string]any `json:"index"`
		} `json:"settings"`
	}
	if err := json.Unmarshal(b, &live); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	li := live[index]
	if _, ok := li.Aliases[cfg.IndexPrefix]; !ok {
		t.Errorf("index %s lacks alias %s: %s", index, cfg.IndexPrefix, b)
	}
	if li.Mappings.Properties["payload"]["type"] != "flattened" || li.Mappings.Properties["@timestamp"]["type"] != "date_nanos" {
		t.Errorf("live mapping: %s", b)
	}
	if li.Settings.Index["refresh_interval"] != fmt.Sprintf("%dms", cfg.RefreshInterval.Milliseconds()) {
		t.Errorf("live refresh_interval: %v", li.Settings.Index["refresh_interval"])
	}

	// Strict mapping: a document with an unknown field is refused by Elasticsearch itself.
	status := putJSON(t, cfg.URLs[0]+"/"+index+"/_create/x?refresh=true", `{"id":"x","clientId":"c","@timestamp":"2026-05-06T00:00:00Z","ingestedAt":"2026-05-06T00:00:00Z","extra":1}`)
	if status != http.StatusBadRequest {
		t.Errorf("unknown field: status %d, want 400 from the strict mapping", status)
	}
}

// putJSON sends body to Elasticsearch directly, past the store, and returns the status.
func putJSON(t *testing.T, url, body string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// An index created by an older template lacks the fields added since; its mapping is strict, so
// it would refuse every new document. InstallTemplate adds the fields to it.
func TestInstallTemplateAddsNewFieldsToExistingIndices(t *testing.T) {
	cfg := testenv.ES(t)
	ctx := testenv.Context(t, time.Minute)
	s, err := esstore.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	old := `{"mappings":{"dynamic":"strict","properties":{"id":{"type":"keyword"},"clientId":{"type":"keyword"},` +
		`"type":{"type":"keyword"},"@timestamp":{"type":"date_nanos"},"ingestedAt":{"type":"date_nanos"},"payload":{"type":"flattened"}}}}`
	if status := putJSON(t, cfg.URLs[0]+"/"+s.IndexFor(ts), old); status != http.StatusOK {
		t.Fatalf("create the old index: %d", status)
	}
	e := event.Event{ID: "upgrade-1", ClientID: "c", Timestamp: ts, IngestedAt: ts}
	if _, err := testenv.Put(ctx, s, e); err == nil {
		t.Fatal("the old index took a document with idHash: the test no longer shows the upgrade")
	}
	if err := s.InstallTemplate(ctx); err != nil {
		t.Fatal(err)
	}
	if created, err := testenv.Put(ctx, s, e); err != nil || !created {
		t.Fatalf("put after InstallTemplate: %v %v", created, err)
	}
}

func TestUnreachableIsUnavailable(t *testing.T) {
	cfg := testenv.DefaultES("http://127.0.0.1:1")
	cfg.MaxRetries = 0
	s, _ := esstore.New(cfg, nil)
	err := s.Ping(testenv.Context(t, 10*time.Second))
	if !errors.Is(err, event.ErrUnavailable) {
		t.Fatalf("ping unreachable: %v", err)
	}
}

// The template's version decides who may replace it: an older or missing one is installed over
// (and fails the check until then), a newer one is left alone and passes.
func TestTemplateVersions(t *testing.T) {
	cfg := testenv.ES(t)
	ctx := testenv.Context(t, time.Minute)
	s, err := esstore.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	own := esstore.TemplateVersion()
	withVersion := func(v int, note string) string {
		body, err := s.Template()
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatal(err)
		}
		m["_meta"] = map[string]any{"template_version": v, "description": note}
		out, _ := json.Marshal(m)
		return string(out)
	}
	installedVersion := func() (int, string) {
		res, err := http.Get(cfg.URLs[0] + "/_index_template/" + s.TemplateName())
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out struct {
			IndexTemplates []struct {
				IndexTemplate struct {
					Meta struct {
						Version     int    `json:"template_version"`
						Description string `json:"description"`
					} `json:"_meta"`
				} `json:"index_template"`
			} `json:"index_templates"`
		}
		if err := json.NewDecoder(res.Body).Decode(&out); err != nil || len(out.IndexTemplates) != 1 {
			t.Fatalf("get template: %d templates, %v", len(out.IndexTemplates), err)
		}
		m := out.IndexTemplates[0].IndexTemplate.Meta
		return m.Version, m.Description
	}
	url := cfg.URLs[0] + "/_index_template/" + s.TemplateName()

	if err := s.CheckTemplate(ctx); !errors.Is(err, esstore.ErrTemplateOutdated) {
		t.Fatalf("nothing installed: %v, want ErrTemplateOutdated", err)
	}
	if err := s.InstallTemplate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckTemplate(ctx); err != nil {
		t.Fatalf("installed: %v", err)
	}

	// An older ingest put its template back (a rollback, or an old process restarting).
	if status := putJSON(t, url, withVersion(own-1, "older")); status != http.StatusOK {
		t.Fatalf("put the older template: %d", status)
	}
	if err := s.CheckTemplate(ctx); !errors.Is(err, esstore.ErrTemplateOutdated) || !strings.Contains(err.Error(), fmt.Sprintf("version %d", own-1)) {
		t.Fatalf("older template: %v, want ErrTemplateOutdated naming version %d", err, own-1)
	}
	if err := s.InstallTemplate(ctx); err != nil {
		t.Fatal(err)
	}
	if v, _ := installedVersion(); v != own {
		t.Fatalf("after reinstall: version %d, want %d", v, own)
	}
	if err := s.CheckTemplate(ctx); err != nil {
		t.Fatalf("reinstalled: %v", err)
	}

	// A newer ingest is rolling out: this one must not take its template away.
	if status := putJSON(t, url, withVersion(own+1, "newer")); status != http.StatusOK {
		t.Fatalf("put the newer template: %d", status)
	}
	if err := s.InstallTemplate(ctx); err != nil {
		t.Fatal(err)
	}
	if v, note := installedVersion(); v != own+1 || note != "newer" {
		t.Fatalf("InstallTemplate replaced a newer template: now version %d (%q)", v, note)
	}
	if err := s.CheckTemplate(ctx); err != nil {
		t.Fatalf("newer template: %v", err)
	}

	// Deleted behind the service's back.
	req, _ := http.NewRequest(http.MethodDelete, url, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("delete the template: %v %v", res, err)
	}
	res.Body.Close()
	if err := s.CheckTemplate(ctx); !errors.Is(err, esstore.ErrTemplateOutdated) {
		t.Fatalf("deleted: %v, want ErrTemplateOutdated", err)
	}
}
