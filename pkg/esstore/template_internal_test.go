package esstore

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/spillway/spillway/pkg/config"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// The templates as ingest installs them with the default configuration, byte for byte. A change
// to either must come with a raised _meta.template_version, or processes of the old and new
// versions would each take the other's template for their own (template.go); then
//
//	go test ./pkg/esstore -run TestTemplatesAreGolden -update
func TestTemplatesAreGolden(t *testing.T) {
	cfg, _, err := config.Load(config.RoleIngest, nil, nil, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg.Elasticsearch, nil)
	if err != nil {
		t.Fatal(err)
	}
	events, err := s.Template()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file    string
		body    []byte
		version int
	}{
		{"events-template.golden.json", events, TemplateVersion()},
		{"retention-template.golden.json", s.retentionLogTemplate(), retentionLogVersion},
	} {
		var pretty bytes.Buffer
		if err := json.Indent(&pretty, tc.body, "", "  "); err != nil {
			t.Fatal(err)
		}
		pretty.WriteByte('\n')
		path := filepath.Join("testdata", tc.file)
		if *update {
			if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		golden, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update to create it)", err)
		}
		if bytes.Equal(golden, pretty.Bytes()) {
			continue
		}
		var was struct {
			Meta struct {
				Version int `json:"template_version"`
			} `json:"_meta"`
		}
		_ = json.Unmarshal(golden, &was)
		if was.Meta.Version == tc.version {
			t.Errorf("%s: the rendered template changed but its _meta.template_version is still %d: raise it, then run with -update\ngot:\n%s",
				tc.file, tc.version, pretty.Bytes())
		} else {
			t.Errorf("%s: the template is at version %d, the golden file at %d: run with -update and review the diff", tc.file, tc.version, was.Meta.Version)
		}
	}
}
