package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

const kibanaFile = "mappings/kibana/saved-objects.ndjson"

// savedObject is one line of a Kibana saved objects export.
type savedObject struct {
	ID                   string                     `json:"id"`
	Type                 string                     `json:"type"`
	CoreMigrationVersion string                     `json:"coreMigrationVersion"`
	TypeMigrationVersion string                     `json:"typeMigrationVersion"`
	Attributes           map[string]json.RawMessage `json:"attributes"`
	References           *[]objectRef               `json:"references"`
}

type objectRef struct {
	Name string `json:"name"`
	Type string `json:"type"`
	ID   string `json:"id"`
}

func (o savedObject) key() string { return o.Type + "/" + o.ID }

func (o savedObject) ref(name string) (objectRef, bool) {
	for _, r := range *o.References {
		if r.Name == name {
			return r, true
		}
	}
	return objectRef{}, false
}

// attr decodes attribute name into v; string attributes that hold JSON (searchSourceJSON,
// panelsJSON, ...) are decoded with nestedJSON instead.
func (o savedObject) attr(t *testing.T, name string, v any) {
	t.Helper()
	raw, ok := o.Attributes[name]
	if !ok {
		t.Fatalf("%s: attribute %s missing", o.key(), name)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: attribute %s: %v", o.key(), name, err)
	}
}

// nestedJSON decodes a string attribute that itself holds JSON, as Kibana stores
// searchSourceJSON, panelsJSON, optionsJSON and the data view's maps.
func nestedJSON(t *testing.T, o savedObject, what, s string, v any) {
	t.Helper()
	if err := decodeStrict([]byte(s), v); err != nil {
		t.Fatalf("%s: %s is not valid JSON: %v\n%s", o.key(), what, err, s)
	}
}

func loadSavedObjects(t *testing.T) []savedObject {
	t.Helper()
	b := readFile(t, kibanaFile)
	if !bytes.HasSuffix(b, []byte("\n")) {
		t.Errorf("%s: last line lacks its newline", kibanaFile)
	}
	var out []savedObject
	for i, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		var o savedObject
		if err := decodeStrict([]byte(line), &o); err != nil {
			t.Fatalf("%s:%d: not a JSON object: %v", kibanaFile, i+1, err)
		}
		if o.ID == "" || o.Type == "" || len(o.Attributes) == 0 || o.References == nil {
			t.Fatalf("%s:%d: id, type, attributes and references are required", kibanaFile, i+1)
		}
		out = append(out, o)
	}
	return out
}

// semver parses "a.b.c".
func semver(s string) ([3]int, bool) {
	var v [3]int
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return v, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return v, false
		}
		v[i] = n
	}
	return v, true
}

func lessEq(a, b [3]int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return true
}

// TestKibanaSavedObjects checks the NDJSON that scripts/kibana-import.sh loads: well-formed, ids
// unique, every reference resolves inside the file, the nested JSON strings parse, and every
// field the data view, saved search and Lens panels use exists in the index template with a type
// that supports the use (terms on keywords, histograms on dates).
func TestKibanaSavedObjects(t *testing.T) {
	objs := loadSavedObjects(t)
	tpl := loadTemplate(t)
	fields := tpl.Template.Mappings.Properties

	byKey := map[string]savedObject{}
	ids := map[string]bool{}
	for _, o := range objs {
		if ids[o.ID] {
			t.Errorf("id %q used twice", o.ID)
		}
		ids[o.ID] = true
		byKey[o.key()] = o
	}
	// Kibana migrates an object forward from the version it claims, and refuses one that claims
	// a version newer than it knows; claiming 8.x versions (older than 8.19) is the safe side.
	newest := [3]int{8, 19, 0}
	referenced := map[string]bool{}
	for _, o := range objs {
		switch o.Type {
		case "index-pattern", "search", "lens", "dashboard":
		default:
			t.Errorf("%s: unexpected type", o.key())
		}
		if o.CoreMigrationVersion != "8.8.0" {
			t.Errorf("%s: coreMigrationVersion %q, want 8.8.0 (every 8.8+ export writes it)", o.key(), o.CoreMigrationVersion)
		}
		if v, ok := semver(o.TypeMigrationVersion); !ok || !lessEq(v, newest) {
			t.Errorf("%s: typeMigrationVersion %q: claim an 8.x version up to 8.19.0, which Kibana migrates forward on import", o.key(), o.TypeMigrationVersion)
		}
		names := map[string]bool{}
		for _, r := range *o.References {
			if names[r.Name] {
				t.Errorf("%s: reference name %q used twice", o.key(), r.Name)
			}
			names[r.Name] = true
			if _, ok := byKey[r.Type+"/"+r.ID]; !ok {
				t.Errorf("%s: reference %q points to %s/%s, which is not in the file", o.key(), r.Name, r.Type, r.ID)
			}
			referenced[r.Type+"/"+r.ID] = true
		}
	}

	var dataViews, searches, lenses, dashboards int
	for _, o := range objs {
		t.Run(o.key(), func(t *testing.T) {
			switch o.Type {
			case "index-pattern":
				dataViews++
				checkDataView(t, o, tpl)
			case "search":
				searches++
				checkSearch(t, o, fields)
			case "lens":
				lenses++
				checkLens(t, o, fields)
			case "dashboard":
				dashboards++
				checkDashboard(t, o)
			}
			if o.Type != "dashboard" && !referenced[o.key()] {
				t.Errorf("nothing references %s: it would be an orphan in Kibana", o.key())
			}
		})
	}
	if dataViews != 1 || searches < 1 || lenses < 3 || dashboards != 1 {
		t.Errorf("want 1 data view, a saved search, 3+ Lens panels, 1 dashboard; got %d, %d, %d, %d",
			dataViews, searches, lenses, dashboards)
	}
}

func checkDataView(t *testing.T, o savedObject, tpl eventsTemplate) {
	var title, timeField string
	o.attr(t, "title", &title)
	o.attr(t, "timeFieldName", &timeField)
	if title != tpl.IndexPatterns[0] {
		t.Errorf("data view title %q, want the template's index pattern %q", title, tpl.IndexPatterns[0])
	}
	if timeField != "@timestamp" {
		t.Errorf("timeFieldName %q, want @timestamp", timeField)
	}
	if ft := tpl.Template.Mappings.Properties[timeField].Type; ft != "date_nanos" && ft != "date" {
		t.Errorf("time field %s is mapped as %q, not a date", timeField, ft)
	}
	for _, name := range []string{"fieldAttrs", "fieldFormatMap", "fields", "runtimeFieldMap", "sourceFilters", "typeMeta"} {
		var s string
		o.attr(t, name, &s)
		var v any
		nestedJSON(t, o, name, s, &v)
		if name == "runtimeFieldMap" && s != "{}" {
			// Runtime fields are Painless scripts; the events need none.
			t.Errorf("runtimeFieldMap %s: no runtime fields expected", s)
		}
	}
}

// searchSource is the decoded kibanaSavedObjectMeta.searchSourceJSON.
type searchSource struct {
	Query struct {
		Query    string `json:"query"`
		Language string `json:"language"`
	} `json:"query"`
	Filter       []any  `json:"filter"`
	IndexRefName string `json:"indexRefName"`
}

func objectSearchSource(t *testing.T, o savedObject) searchSource {
	var meta struct {
		SearchSourceJSON string `json:"searchSourceJSON"`
	}
	o.attr(t, "kibanaSavedObjectMeta", &meta)
	var ss searchSource
	nestedJSON(t, o, "searchSourceJSON", meta.SearchSourceJSON, &ss)
	if ss.Query.Language != "kuery" {
		t.Errorf("query language %q, want kuery (KQL)", ss.Query.Language)
	}
	return ss
}

func checkSearch(t *testing.T, o savedObject, fields map[string]templateField) {
	ss := objectSearchSource(t, o)
	r, ok := o.ref(ss.IndexRefName)
	if ss.IndexRefName == "" || !ok || r.Type != "index-pattern" {
		t.Errorf("indexRefName %q does not name an index-pattern reference", ss.IndexRefName)
	}
	if !strings.HasPrefix(ss.Query.Query, "clientId : ") {
		t.Errorf("query %q: the saved search is one client's events (clientId : \"...\")", ss.Query.Query)
	}
	var columns []string
	o.attr(t, "columns", &columns)
	if len(columns) == 0 {
		t.Error("no columns")
	}
	for _, c := range columns {
		if _, ok := fields[c]; !ok {
			t.Errorf("column %q is not a field of the index template", c)
		}
	}
	var sort [][]string
	o.attr(t, "sort", &sort)
	for _, s := range sort {
		if len(s) != 2 || (s[1] != "asc" && s[1] != "desc") {
			t.Errorf("sort %q: want [field, asc|desc]", s)
			continue
		}
		if _, ok := fields[s[0]]; !ok {
			t.Errorf("sort field %q is not a field of the index template", s[0])
		}
	}
}

// lensColumn is one column of a Lens formBased layer.
type lensColumn struct {
	OperationType string `json:"operationType"`
	SourceField   string `json:"sourceField"`
	DataType      string `json:"dataType"`
	IsBucketed    bool   `json:"isBucketed"`
	Params        struct {
		OrderBy *struct {
			Type     string `json:"type"`
			ColumnID string `json:"columnId"`
		} `json:"orderBy"`
	} `json:"params"`
}

type lensState struct {
	DatasourceStates struct {
		FormBased struct {
			Layers map[string]struct {
				Columns     map[string]lensColumn `json:"columns"`
				ColumnOrder []string              `json:"columnOrder"`
			} `json:"layers"`
		} `json:"formBased"`
	} `json:"datasourceStates"`
	Visualization json.RawMessage `json:"visualization"`
	Query         struct {
		Language string `json:"language"`
	} `json:"query"`
	Filters []any `json:"filters"`
}

// fieldOps says which index-template field types each Lens operation accepts.
var fieldOps = map[string][]string{
	"terms":          {"keyword"},
	"unique_count":   {"keyword"},
	"date_histogram": {"date", "date_nanos"},
}

func checkLens(t *testing.T, o savedObject, fields map[string]templateField) {
	var vtype string
	o.attr(t, "visualizationType", &vtype)
	switch vtype {
	case "lnsXY", "lnsPie", "lnsMetric", "lnsDatatable":
	default:
		t.Errorf("visualizationType %q", vtype)
	}
	// state is an object in exports; older exports held it as a JSON string: accept both.
	raw := o.Attributes["state"]
	var s string
	if json.Unmarshal(raw, &s) == nil {
		raw = json.RawMessage(s)
	}
	var st lensState
	if err := decodeStrict(raw, &st); err != nil {
		t.Fatalf("state: %v", err)
	}
	if st.Query.Language != "kuery" || st.Filters == nil {
		t.Errorf("state.query/filters missing")
	}
	layers := st.DatasourceStates.FormBased.Layers
	if len(layers) == 0 {
		t.Fatal("no formBased layers")
	}
	columns := map[string]bool{}
	for id, layer := range layers {
		if r, ok := o.ref("indexpattern-datasource-layer-" + id); !ok || r.Type != "index-pattern" {
			t.Errorf("layer %s has no index-pattern reference named indexpattern-datasource-layer-%s", id, id)
		}
		if len(layer.ColumnOrder) != len(layer.Columns) {
			t.Errorf("layer %s: columnOrder %v does not list the %d columns", id, layer.ColumnOrder, len(layer.Columns))
		}
		for _, c := range layer.ColumnOrder {
			if _, ok := layer.Columns[c]; !ok {
				t.Errorf("layer %s: columnOrder names unknown column %q", id, c)
			}
		}
		for cid, c := range layer.Columns {
			columns[cid] = true
			if c.OperationType == "count" && c.SourceField == "___records___" {
				continue
			}
			f, ok := fields[c.SourceField]
			if !ok {
				t.Errorf("column %s: field %q is not in the index template", cid, c.SourceField)
				continue
			}
			if allowed, ok := fieldOps[c.OperationType]; ok && !contains(allowed, f.Type) {
				t.Errorf("column %s: %s on %s, a %s field (needs %v)", cid, c.OperationType, c.SourceField, f.Type, allowed)
			}
			if ob := c.Params.OrderBy; ob != nil && ob.Type == "column" {
				if _, ok := layer.Columns[ob.ColumnID]; !ok {
					t.Errorf("column %s: orders by unknown column %q", cid, ob.ColumnID)
				}
			}
		}
	}
	// Every layer id and column id the visualization names must exist.
	var vis any
	if err := json.Unmarshal(st.Visualization, &vis); err != nil || vis == nil {
		t.Fatalf("visualization: %v", err)
	}
	used := 0
	walkJSON(vis, func(key string, v any) {
		switch key {
		case "layerId":
			if id, _ := v.(string); layers[id].Columns == nil {
				t.Errorf("visualization names unknown layer %v", v)
			}
		case "xAccessor", "splitAccessor", "metricAccessor", "accessor":
			used++
			if id, _ := v.(string); !columns[id] {
				t.Errorf("visualization %s names unknown column %v", key, v)
			}
		case "accessors", "primaryGroups", "metrics":
			list, _ := v.([]any)
			for _, x := range list {
				used++
				if id, _ := x.(string); !columns[id] {
					t.Errorf("visualization %s names unknown column %v", key, x)
				}
			}
		}
	})
	if used == 0 {
		t.Error("visualization uses no column")
	}
}

func walkJSON(v any, f func(key string, v any)) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			f(k, c)
			walkJSON(c, f)
		}
	case []any:
		for _, c := range x {
			walkJSON(c, f)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

type dashboardPanel struct {
	Type       string `json:"type"`
	PanelIndex string `json:"panelIndex"`
	GridData   struct {
		X, Y, W, H int
		I          string `json:"i"`
	} `json:"gridData"`
	PanelRefName string `json:"panelRefName"`
}

func checkDashboard(t *testing.T, o savedObject) {
	var panelsJSON, optionsJSON string
	o.attr(t, "panelsJSON", &panelsJSON)
	o.attr(t, "optionsJSON", &optionsJSON)
	var panels []dashboardPanel
	nestedJSON(t, o, "panelsJSON", panelsJSON, &panels)
	var options map[string]any
	nestedJSON(t, o, "optionsJSON", optionsJSON, &options)
	objectSearchSource(t, o)
	if len(panels) == 0 {
		t.Fatal("no panels")
	}
	usedRefs := map[string]bool{}
	seen := map[string]bool{}
	for i, p := range panels {
		g := p.GridData
		if p.PanelIndex == "" || seen[p.PanelIndex] {
			t.Errorf("panel %d: panelIndex %q empty or repeated", i, p.PanelIndex)
		}
		seen[p.PanelIndex] = true
		if g.I != p.PanelIndex {
			t.Errorf("panel %s: gridData.i %q differs from panelIndex", p.PanelIndex, g.I)
		}
		if g.X < 0 || g.Y < 0 || g.W <= 0 || g.H <= 0 || g.X+g.W > 48 {
			t.Errorf("panel %s: gridData %+v outside the 48-column grid", p.PanelIndex, g)
		}
		for _, q := range panels[:i] {
			h := q.GridData
			if g.X < h.X+h.W && h.X < g.X+g.W && g.Y < h.Y+h.H && h.Y < g.Y+g.H {
				t.Errorf("panels %s and %s overlap", q.PanelIndex, p.PanelIndex)
			}
		}
		// By-reference panels: panelRefName "panel_<i>" and a dashboard reference "<i>:panel_<i>".
		if p.PanelRefName != "panel_"+p.PanelIndex {
			t.Errorf("panel %s: panelRefName %q, want panel_%s", p.PanelIndex, p.PanelRefName, p.PanelIndex)
		}
		name := p.PanelIndex + ":" + p.PanelRefName
		r, ok := o.ref(name)
		if !ok {
			t.Errorf("panel %s: no reference named %q", p.PanelIndex, name)
		} else if r.Type != p.Type {
			t.Errorf("panel %s is a %s but its reference is a %s", p.PanelIndex, p.Type, r.Type)
		}
		usedRefs[name] = true
	}
	for _, r := range *o.References {
		if !usedRefs[r.Name] {
			t.Errorf("reference %q is used by no panel", r.Name)
		}
	}
}

// TestKibanaImportScript runs scripts/kibana-import.sh against a stand-in for Kibana's HTTP API
// and checks the request it makes: it waits for /api/status to report "available", then POSTs the
// file as multipart field "file" (named *.ndjson) with kbn-xsrf and overwrite=true, and fails
// loudly when Kibana refuses the import or never becomes available. What Kibana does with the
// objects is covered by TestKibanaSavedObjects, not by this fake.
func TestKibanaImportScript(t *testing.T) {
	for _, tool := range []string{"sh", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed to run scripts/kibana-import.sh: %v", tool, err)
		}
	}
	want := readFile(t, kibanaFile)
	objects := bytes.Count(want, []byte("\n"))

	type fake struct {
		statusCalls  atomic.Int32
		availableAt  int32 // /api/status reports available from this call on (0: never)
		importAnswer string
		problems     chan string
	}
	newServer := func(f *fake) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/api/status":
				n := f.statusCalls.Add(1)
				if f.availableAt == 0 || n < f.availableAt {
					w.WriteHeader(http.StatusServiceUnavailable)
					io.WriteString(w, `{"status":{"overall":{"level":"unavailable"}}}`)
					return
				}
				io.WriteString(w, `{"version":{"number":"8.19.21"},"status":{"overall":{"level":"available"}}}`)
			case "/api/saved_objects/_import":
				if p := checkImportRequest(r, want); p != "" {
					f.problems <- p
					w.WriteHeader(http.StatusBadRequest)
					io.WriteString(w, `{"statusCode":400,"error":"Bad Request","message":"`+p+`"}`)
					return
				}
				io.WriteString(w, f.importAnswer)
			default:
				f.problems <- "unexpected request " + r.Method + " " + r.URL.String()
				http.NotFound(w, r)
			}
		}))
	}
	run := func(t *testing.T, url string, env ...string) (string, error) {
		cmd := exec.Command("sh", filepath.Join(root, "scripts/kibana-import.sh"), filepath.Join(root, kibanaFile))
		cmd.Env = append(os.Environ(), append([]string{"KIBANA_URL=" + url, "KIBANA_POLL=1"}, env...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	t.Run("waits then imports", func(t *testing.T) {
		f := &fake{availableAt: 2, problems: make(chan string, 10),
			importAnswer: fmt.Sprintf(`{"successCount":%d,"success":true,"warnings":[],"successResults":[]}`, objects)}
		srv := newServer(f)
		defer srv.Close()
		out, err := run(t, srv.URL+"/", "KIBANA_WAIT=30")
		close(f.problems)
		for p := range f.problems {
			t.Error(p)
		}
		if err != nil {
			t.Fatalf("script failed: %v\n%s", err, out)
		}
		if !strings.Contains(out, fmt.Sprintf("imported %d saved objects", objects)) {
			t.Errorf("output lacks the imported count:\n%s", out)
		}
		if n := f.statusCalls.Load(); n < 2 {
			t.Errorf("script asked /api/status %d times; it must wait until Kibana is available", n)
		}
	})
	t.Run("refused import fails", func(t *testing.T) {
		f := &fake{availableAt: 1, problems: make(chan string, 10),
			importAnswer: `{"successCount":0,"success":false,"errors":[{"id":"spillway-overview","type":"dashboard","error":{"type":"missing_references"}}]}`}
		srv := newServer(f)
		defer srv.Close()
		out, err := run(t, srv.URL, "KIBANA_WAIT=30")
		if err == nil || !strings.Contains(out, "refused the import") || !strings.Contains(out, "missing_references") {
			t.Errorf("want a failure naming Kibana's errors, got err=%v:\n%s", err, out)
		}
	})
	t.Run("unavailable Kibana times out", func(t *testing.T) {
		f := &fake{problems: make(chan string, 10)}
		srv := newServer(f)
		defer srv.Close()
		out, err := run(t, srv.URL, "KIBANA_WAIT=1")
		if err == nil || !strings.Contains(out, "not available after 1s") {
			t.Errorf("want a timeout failure, got err=%v:\n%s", err, out)
		}
	})
}

// checkImportRequest returns what is wrong with an import request, or "".
func checkImportRequest(r *http.Request, want []byte) string {
	if r.Method != http.MethodPost {
		return "method " + r.Method
	}
	if r.URL.Query().Get("overwrite") != "true" {
		return "overwrite=true missing"
	}
	if r.Header.Get("kbn-xsrf") == "" {
		return "kbn-xsrf header missing"
	}
	file, hdr, err := r.FormFile("file")
	if err != nil {
		return "multipart field file: " + err.Error()
	}
	defer file.Close()
	if !strings.HasSuffix(hdr.Filename, ".ndjson") {
		return "file name " + hdr.Filename + " does not end in .ndjson"
	}
	got, err := io.ReadAll(file)
	if err != nil || !bytes.Equal(got, want) {
		return "uploaded file differs from " + kibanaFile
	}
	return ""
}
