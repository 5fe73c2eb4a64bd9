package esstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/spillway/spillway/mappings"
)

// The index templates are a contract between versions of ingest: each carries
// _meta.template_version, raised with every change to its body. During a rolling deploy old and
// new processes run side by side, so a process installs its templates only over an older
// version (or none), never over a newer one: a template only ever gains fields, and a newer
// one accepts every document an older ingest writes, while an older one would refuse the
// fields a newer ingest adds (the mappings are strict).

// ErrTemplateOutdated means an index template is missing or older than this binary's. Ingest's
// readiness check installs it again when it sees this.
var ErrTemplateOutdated = errors.New("index template missing or outdated")

// TemplateName is the name of the composable index template.
func (s *Store) TemplateName() string { return s.cfg.IndexPrefix + "-template" }

func (s *Store) retentionLogTemplateName() string { return s.RetentionLog() + "-template" }

// TemplateVersion is the embedded event template's _meta.template_version.
func TemplateVersion() int {
	var t struct {
		Meta struct {
			Version int `json:"template_version"`
		} `json:"_meta"`
	}
	if err := json.Unmarshal(mappings.EventsTemplate, &t); err != nil || t.Meta.Version < 1 {
		panic("mappings/elasticsearch/events-template.json has no _meta.template_version")
	}
	return t.Meta.Version
}

// Template returns the index template body with this store's pattern, alias and settings.
func (s *Store) Template() ([]byte, error) {
	var t map[string]any
	if err := json.Unmarshal(mappings.EventsTemplate, &t); err != nil {
		return nil, fmt.Errorf("parse embedded template: %w", err)
	}
	t["index_patterns"] = []string{s.Pattern()}
	tmpl := t["template"].(map[string]any)
	tmpl["aliases"] = map[string]any{s.Alias(): map[string]any{}}
	idx := tmpl["settings"].(map[string]any)["index"].(map[string]any)
	idx["number_of_shards"] = s.cfg.Shards
	idx["refresh_interval"] = fmt.Sprintf("%dms", s.cfg.RefreshInterval.Milliseconds())
	if strings.Contains(s.cfg.Replicas, "-") {
		idx["auto_expand_replicas"] = s.cfg.Replicas
	} else {
		delete(idx, "auto_expand_replicas")
		idx["number_of_replicas"] = s.cfg.Replicas
	}
	return json.Marshal(t)
}

// installedTemplate is what Elasticsearch holds under a template name.
type installedTemplate struct {
	Patterns []string
	Version  int // _meta.template_version; 0 for a template without one
}

// installed reads the templates whose names begin with the index prefix (both of this store's,
// and those of prefixes that begin with it, which the callers ignore): the get API takes one
// name or a wildcard, not a list.
func (s *Store) installed(ctx context.Context) (map[string]installedTemplate, error) {
	res, err := s.es.Indices.GetIndexTemplate(s.es.Indices.GetIndexTemplate.WithName(s.cfg.IndexPrefix+"*"),
		s.es.Indices.GetIndexTemplate.WithContext(ctx))
	if err == nil && res.StatusCode == 404 { // none exists
		res.Body.Close()
		return map[string]installedTemplate{}, nil
	}
	var out struct {
		IndexTemplates []struct {
			Name          string `json:"name"`
			IndexTemplate struct {
				IndexPatterns []string `json:"index_patterns"`
				Meta          struct {
					Version int `json:"template_version"`
				} `json:"_meta"`
			} `json:"index_template"`
		} `json:"index_templates"`
	}
	if err := decode(res, err, "get index templates", &out); err != nil {
		return nil, err
	}
	got := make(map[string]installedTemplate, len(out.IndexTemplates))
	for _, t := range out.IndexTemplates {
		got[t.Name] = installedTemplate{Patterns: t.IndexTemplate.IndexPatterns, Version: t.IndexTemplate.Meta.Version}
	}
	return got, nil
}

// InstallTemplate puts the event index template and the retention log's (retentionlog.go)
// where Elasticsearch holds none or an older version, and adds the event template's fields to
// the open indices it matches. It is idempotent, and it leaves a newer template alone (see
// above), logging that it did. Existing indices keep the settings they were created with (the
// next daily index picks up changes), but a field added to the template is added to them too:
// their mapping is strict, so without it they would refuse documents carrying the new field.
//
// Reading the version and putting the template are two requests: two processes of different
// versions starting at the same moment can still race, and the next readiness check of the
// newer one puts its template back.
func (s *Store) InstallTemplate(ctx context.Context) error {
	body, err := s.Template()
	if err != nil {
		return err
	}
	have, err := s.installed(ctx)
	if err != nil {
		return err
	}
	if t, ok := have[s.TemplateName()]; ok && t.Version > TemplateVersion() {
		s.logger.Warn("index template is newer than this binary's; left as it is",
			"template", s.TemplateName(), "installed_version", t.Version, "own_version", TemplateVersion())
	} else {
		res, err := s.es.Indices.PutIndexTemplate(s.TemplateName(), bytes.NewReader(body), s.es.Indices.PutIndexTemplate.WithContext(ctx))
		if err := check(res, err, "put index template"); err != nil {
			return err
		}
		if err := s.putMappings(ctx, body); err != nil {
			return err
		}
	}
	if t, ok := have[s.retentionLogTemplateName()]; !ok || t.Version <= retentionLogVersion {
		res, err := s.es.Indices.PutIndexTemplate(s.retentionLogTemplateName(), bytes.NewReader(s.retentionLogTemplate()),
			s.es.Indices.PutIndexTemplate.WithContext(ctx))
		if err := check(res, err, "put retention log template"); err != nil {
			return err
		}
	}
	return nil
}

// putMappings adds the template's fields to the open indices it matches.
func (s *Store) putMappings(ctx context.Context, body []byte) error {
	var t struct {
		Template struct {
			Mappings struct {
				Properties json.RawMessage `json:"properties"`
			} `json:"mappings"`
		} `json:"template"`
	}
	if err := json.Unmarshal(body, &t); err != nil {
		return fmt.Errorf("parse template: %w", err)
	}
	props := append(append([]byte(`{"properties":`), t.Template.Mappings.Properties...), '}')
	res, err := s.es.Indices.PutMapping([]string{s.Pattern()}, bytes.NewReader(props),
		s.es.Indices.PutMapping.WithAllowNoIndices(true), s.es.Indices.PutMapping.WithContext(ctx))
	return check(res, err, "put mapping on existing indices")
}

// CheckTemplate returns nil when both templates are installed, the event template with this
// store's pattern, each at this binary's version or a newer one. A missing or older template
// is an error matching ErrTemplateOutdated.
func (s *Store) CheckTemplate(ctx context.Context) error {
	have, err := s.installed(ctx)
	if err != nil {
		return err
	}
	t, ok := have[s.TemplateName()]
	switch {
	case !ok:
		return fmt.Errorf("%w: %s is not installed", ErrTemplateOutdated, s.TemplateName())
	case len(t.Patterns) != 1 || t.Patterns[0] != s.Pattern():
		return fmt.Errorf("index template %s has patterns %v, want [%s]", s.TemplateName(), t.Patterns, s.Pattern())
	case t.Version < TemplateVersion():
		return fmt.Errorf("%w: %s has version %d, this binary's is %d", ErrTemplateOutdated, s.TemplateName(), t.Version, TemplateVersion())
	}
	if r, ok := have[s.retentionLogTemplateName()]; !ok || r.Version < retentionLogVersion {
		return fmt.Errorf("%w: %s is missing or older than version %d", ErrTemplateOutdated, s.retentionLogTemplateName(), retentionLogVersion)
	}
	return nil
}
