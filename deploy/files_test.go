package deploy

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/spillway/spillway/mappings"
	"github.com/spillway/spillway/pkg/config"
)

// root is the repository root, relative to this package's directory (where go test runs).
const root = ".."

func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func exists(rel string) bool {
	_, err := os.Stat(filepath.Join(root, rel))
	return err == nil
}

// binaries lists the commands under cmd/ (directories with a main.go): what the Dockerfile
// builds and the Heroku buildpack installs.
func binaries(t *testing.T) map[string]bool {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "cmd"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range entries {
		if e.IsDir() && exists(filepath.Join("cmd", e.Name(), "main.go")) {
			out[e.Name()] = true
		}
	}
	if len(out) == 0 {
		t.Fatal("no binaries under cmd/")
	}
	return out
}

// knownEnv maps every SPILLWAY_ variable the configuration loader reads to its key.
func knownEnv() map[string]string {
	out := map[string]string{}
	for _, k := range config.Keys() {
		out[config.EnvName(k)] = k
	}
	return out
}

// templateField is one field of the event index template's mapping.
type templateField struct {
	Type string `json:"type"`
}

// eventsTemplate is the part of mappings/elasticsearch/events-template.json the dashboards rely on.
type eventsTemplate struct {
	IndexPatterns []string `json:"index_patterns"`
	Template      struct {
		Mappings struct {
			Properties map[string]templateField `json:"properties"`
		} `json:"mappings"`
	} `json:"template"`
}

func loadTemplate(t *testing.T) eventsTemplate {
	t.Helper()
	var tpl eventsTemplate
	if err := json.Unmarshal(mappings.EventsTemplate, &tpl); err != nil {
		t.Fatalf("events template: %v", err)
	}
	if len(tpl.IndexPatterns) != 1 || len(tpl.Template.Mappings.Properties) == 0 {
		t.Fatalf("events template: unexpected shape: %+v", tpl)
	}
	return tpl
}

// decodeStrict decodes JSON and fails on trailing data.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errTrailing
	}
	return nil
}

type constErr string

func (e constErr) Error() string { return string(e) }

const errTrailing = constErr("trailing data after the JSON value")

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
