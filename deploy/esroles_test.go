package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.yaml.in/yaml/v3"

	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/mappings"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/event"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.RemoveBuilds()
	os.Exit(code)
}

// esRole is one role of the file realm's roles.yml (the fields Spillway's roles use).
type esRole struct {
	Cluster []string        `yaml:"cluster" json:"cluster"`
	Indices []esIndicesPriv `yaml:"indices" json:"indices"`
}

type esIndicesPriv struct {
	Names      []string `yaml:"names" json:"names"`
	Privileges []string `yaml:"privileges" json:"privileges"`
}

// The three roles of mappings/elasticsearch/roles.yml, by service.
var serviceRoles = map[string]string{"ingest": "spillway_ingest", "search": "spillway_search", "archiver": "spillway_archiver"}

func loadESRoles(t *testing.T) map[string]esRole {
	t.Helper()
	var roles map[string]esRole
	dec := yaml.NewDecoder(bytes.NewReader(mappings.ElasticsearchRoles))
	dec.KnownFields(true)
	if err := dec.Decode(&roles); err != nil {
		t.Fatalf("mappings/elasticsearch/roles.yml: %v", err)
	}
	if got := sortedKeys(roles); !slices.Equal(got, []string{"spillway_archiver", "spillway_ingest", "spillway_search"}) {
		t.Fatalf("roles.yml defines %v, want spillway_ingest, spillway_search and spillway_archiver", got)
	}
	for name, r := range roles {
		// Index names of the default prefix only: the documentation tells users with another
		// prefix to replace exactly these.
		for _, entry := range r.Indices {
			for _, n := range entry.Names {
				if n != "events" && n != "events-*" && n != "events.retention" {
					t.Errorf("%s: index name %q (only the default prefix's events, events-* and events.retention)", name, n)
				}
			}
		}
	}
	return roles
}

// privilege is one thing a role grants: a cluster privilege, an index privilege of one indices
// entry, or an index name its entry's privileges apply to.
type privilege struct {
	role, kind, name string // kind: cluster, indices or names
	entry            int    // the indices entry (kinds indices and names)
	on               string // the entry's first name: tells the entries' privileges apart
}

// String is the probe's key: "role cluster x", "role names n", "role indices p" for the first
// entry and "role indices p on n" for the others.
func (p privilege) String() string {
	if p.kind == "indices" && p.entry > 0 {
		return p.role + " indices " + p.name + " on " + p.on
	}
	return p.role + " " + p.kind + " " + p.name
}

// without is the role with one privilege or index name removed (an entry's only index name takes
// the entry with it: an entry without names is not a role Elasticsearch loads).
func (r esRole) without(p privilege) esRole {
	drop := func(list []string) []string {
		return slices.DeleteFunc(slices.Clone(list), func(s string) bool { return s == p.name })
	}
	out := esRole{Cluster: slices.Clone(r.Cluster)}
	for i, e := range r.Indices {
		e = esIndicesPriv{Names: slices.Clone(e.Names), Privileges: slices.Clone(e.Privileges)}
		if i == p.entry {
			switch p.kind {
			case "indices":
				e.Privileges = drop(e.Privileges)
			case "names":
				e.Names = drop(e.Names)
			}
		}
		if len(e.Names) > 0 && len(e.Privileges) > 0 {
			out.Indices = append(out.Indices, e)
		}
	}
	if p.kind == "cluster" {
		out.Cluster = drop(out.Cluster)
	}
	return out
}

// privileges lists what the role grants: its cluster privileges, its index privileges and the
// index names they apply to (each name must be needed as much as each privilege).
func (r esRole) privileges(role string) []privilege {
	var out []privilege
	for _, c := range r.Cluster {
		out = append(out, privilege{role: role, kind: "cluster", name: c})
	}
	for i, e := range r.Indices {
		for _, p := range e.Privileges {
			out = append(out, privilege{role: role, kind: "indices", name: p, entry: i, on: e.Names[0]})
		}
		for _, n := range e.Names {
			out = append(out, privilege{role: role, kind: "names", name: n, entry: i, on: e.Names[0]})
		}
	}
	return out
}

// roleFixture is what the privilege probes work on, after the services' run.
type roleFixture struct {
	url           string
	existing      string // an event index holding events
	existingID    string // an event of it
	sacrificial   string // an index probes may delete, with one document
	sacrificialID string
	newDay        time.Time // a day without an index
	adminPassword string
	drop          event.Drop // a retention log record (the log exists after the services' run)
}

// probe exercises the operation of a service that needs one privilege. It returns nil when the
// operation did its work — and an error when it was refused or, as Elasticsearch does for a
// wildcard the user may not see, silently answered from no index.
type probe func(ctx context.Context, f *roleFixture, s *esstore.Store, user, password string) error

// writeProbe writes one event at ts through ingest's own write path. A refused write comes back
// as a rejected item; the timeout bounds a refusal of the whole request, which the writer retries.
func writeProbe(ctx context.Context, s *esstore.Store, ts time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	_, _, err := testenv.BulkCreate(ctx, s, []event.Event{{ID: testenv.Name("p"), ClientID: "probe", Timestamp: ts, IngestedAt: ts}})
	return err
}

// probes maps each privilege of roles.yml to an operation that needs it. A privilege without
// a probe fails the test: every privilege must be shown necessary.
var probes = map[string]probe{
	"spillway_ingest cluster cluster:monitor/health": pingProbe,
	"spillway_ingest cluster manage_index_templates": func(ctx context.Context, _ *roleFixture, s *esstore.Store, _, _ string) error {
		return s.InstallTemplate(ctx)
	},
	"spillway_ingest indices create_doc": func(ctx context.Context, f *roleFixture, s *esstore.Store, _, _ string) error {
		now := time.Now().UTC()
		return writeProbe(ctx, s, now)
	},
	"spillway_ingest indices create_index": func(ctx context.Context, f *roleFixture, s *esstore.Store, _, _ string) error {
		err := writeProbe(ctx, s, f.newDay.Add(time.Hour))
		f.newDay = f.newDay.AddDate(0, 0, -1) // the next probe needs a day without an index again
		return err
	},
	// create_doc still allows mapping updates in 8.x, with a deprecation warning: without the
	// explicit action the update passes but warns, and would fail on the next major version.
	"spillway_ingest names events-*": func(ctx context.Context, _ *roleFixture, s *esstore.Store, _, _ string) error {
		return s.InstallTemplate(ctx) // the put mapping on existing indices
	},
	"spillway_ingest indices indices:admin/mapping/put": func(ctx context.Context, f *roleFixture, _ *esstore.Store, user, password string) error {
		res, body, err := rawES(ctx, f.url, user, password, http.MethodPut, "/events-*/_mapping", `{"properties":{"id":{"type":"keyword"}}}`)
		if err != nil {
			return err
		}
		if w := res.Header.Values("Warning"); len(w) > 0 {
			return fmt.Errorf("put mapping allowed with a deprecation warning: %q", w)
		}
		return statusOK(res, body)
	},

	"spillway_search cluster cluster:monitor/health": pingProbe,
	"spillway_search indices read": func(ctx context.Context, f *roleFixture, s *esstore.Store, _, _ string) error {
		_, err := s.Get(ctx, f.existingID, time.Time{}) // through the alias, like every read of the API
		return err
	},
	"spillway_search indices monitor":     shardsProbe,
	"spillway_search indices maintenance": refreshProbe,
	"spillway_search names events": func(ctx context.Context, f *roleFixture, s *esstore.Store, _, _ string) error {
		_, err := s.Get(ctx, f.existingID, time.Time{}) // the API's reads go through the alias
		return err
	},
	"spillway_search names events-*": shardsProbe, // the live stream reads the indices
	// The cold tier's check against the retention log (without read, the search answers from no
	// index: nothing deleted, so a restored archive would go unnoticed).
	"spillway_search indices read on events.retention": droppedProbe,
	"spillway_search names events.retention":           droppedProbe,

	"spillway_archiver cluster cluster:monitor/health": pingProbe,
	"spillway_archiver cluster cluster:monitor/state": func(ctx context.Context, _ *roleFixture, s *esstore.Store, _, _ string) error {
		indices, err := s.Indices(ctx) // retention's list
		if err == nil && len(indices) == 0 {
			return errors.New("no event index listed")
		}
		return err
	},
	"spillway_archiver indices read": func(ctx context.Context, f *roleFixture, s *esstore.Store, _, _ string) error {
		_, err := s.CountShard(ctx, f.existing, 0, 1<<40, []event.Range{{From: time.Unix(0, 0), To: time.Now().Add(time.Hour)}})
		return err
	},
	"spillway_archiver indices monitor":                  shardsProbe,
	"spillway_archiver indices maintenance":              refreshProbe,
	"spillway_archiver names events-*":                   shardsProbe,
	"spillway_archiver indices read on events.retention": droppedProbe,
	"spillway_archiver names events.retention":           droppedProbe,
	// Retention's first record creates the log: the probe removes it (as the admin) first.
	"spillway_archiver indices create_index on events.retention": func(ctx context.Context, f *roleFixture, s *esstore.Store, _, _ string) error {
		res, b, err := rawES(ctx, f.url, "elastic", f.adminPassword, http.MethodDelete, "/"+s.RetentionLog()+"?ignore_unavailable=true", "")
		if err != nil {
			return err
		}
		if err := statusOK(res, b); err != nil {
			return err
		}
		return s.LogDrop(ctx, f.drop)
	},
	"spillway_archiver indices index on events.retention": func(ctx context.Context, f *roleFixture, s *esstore.Store, _, _ string) error {
		return s.LogDrop(ctx, f.drop)
	},
	"spillway_archiver indices delete_index": func(ctx context.Context, f *roleFixture, s *esstore.Store, _, _ string) error {
		return s.DeleteIndex(ctx, f.sacrificial)
	},
	// What `archiver forget` will do: delete documents by id with _bulk.
	"spillway_archiver indices delete": func(ctx context.Context, f *roleFixture, _ *esstore.Store, user, password string) error {
		body := fmt.Sprintf(`{"delete":{"_index":%q,"_id":%q}}`+"\n", f.sacrificial, f.sacrificialID)
		res, b, err := rawES(ctx, f.url, user, password, http.MethodPost, "/_bulk", body)
		if err != nil {
			return err
		}
		if err := statusOK(res, b); err != nil {
			return err
		}
		var out struct {
			Items []map[string]struct {
				Status int `json:"status"`
			} `json:"items"`
		}
		if err := json.Unmarshal(b, &out); err != nil || len(out.Items) != 1 || out.Items[0]["delete"].Status != http.StatusOK {
			return fmt.Errorf("bulk delete by id: %s", b)
		}
		return nil
	},
}

// droppedProbe reads the retention log: the last deleted day must be found.
func droppedProbe(ctx context.Context, f *roleFixture, s *esstore.Store, _, _ string) error {
	through, ok, err := s.DroppedThrough(ctx)
	if err != nil {
		return err
	}
	if !ok || through.Before(f.drop.Day.Add(24*time.Hour)) {
		return fmt.Errorf("the retention log shows nothing deleted through %s (found %v %s)", f.drop.Day, ok, through)
	}
	return nil
}

func pingProbe(ctx context.Context, _ *roleFixture, s *esstore.Store, _, _ string) error {
	return s.Ping(ctx)
}

// shardsProbe reads the shard checkpoints: index stats over the pattern. Without the privilege
// Elasticsearch answers from the indices the user may see — none — instead of refusing.
func shardsProbe(ctx context.Context, f *roleFixture, s *esstore.Store, _, _ string) error {
	shards, err := s.Shards(ctx)
	if err != nil {
		return err
	}
	if len(shards) == 0 {
		return errors.New("index stats show no shard")
	}
	return nil
}

func refreshProbe(ctx context.Context, f *roleFixture, s *esstore.Store, _, _ string) error {
	return s.RefreshIndices(ctx, f.existing)
}

// rawES sends one request for an operation esstore has no method for.
func rawES(ctx context.Context, base, user, password, method, path, body string) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.SetBasicAuth(user, password)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res, b, err
}

func statusOK(res *http.Response, body []byte) error {
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %d %s", res.Request.URL.Path, res.StatusCode, body)
	}
	return nil
}

// TestElasticsearchRoles proves mappings/elasticsearch/roles.yml against a real node with
// security on, in two halves.
//
// Sufficient: ingest, search and the archiver run as binaries, each as a file-realm user holding
// only its role, through every path that touches Elasticsearch — ingest's template installation
// (also over existing indices, after a restart) and bulk writes into new and existing daily
// indices; `archiver run` (feed, checkpoints, periodic verify and retention), verify, verify
// --repair, status, backfill and retention --apply; search's pages across both tiers, count, get
// by id and live streams. Every step must succeed, no service may log a refusal, and the node
// must log no deprecation of a privilege.
//
// Necessary: for each privilege, a user holding its role minus that privilege fails an
// operation of that service which the full role passes.
func TestElasticsearchRoles(t *testing.T) {
	roles := loadESRoles(t)
	var all []privilege
	for _, name := range sortedKeys(roles) {
		all = append(all, roles[name].privileges(name)...)
	}
	for _, p := range all {
		if probes[p.String()] == nil {
			t.Errorf("%s: no probe shows it is needed (add one to probes, or remove the privilege)", p)
		}
	}
	for key := range probes {
		if !slices.ContainsFunc(all, func(p privilege) bool { return p.String() == key }) {
			t.Errorf("probe %q: roles.yml has no such privilege", key)
		}
	}
	if t.Failed() {
		return
	}

	// The file under test, verbatim, plus one role and user per privilege without it.
	password := testenv.Name("pw-")
	users := []testenv.FileUser{}
	for service, role := range serviceRoles {
		users = append(users, testenv.FileUser{Name: service, Password: password, Roles: []string{role}})
	}
	mutants := map[string]esRole{}
	mutantUser := map[privilege]string{}
	for i, p := range all {
		name := fmt.Sprintf("probe_%s_%d", p.role, i)
		mutants[name] = roles[p.role].without(p)
		mutantUser[p] = fmt.Sprintf("probe-%d", i)
		users = append(users, testenv.FileUser{Name: mutantUser[p], Password: password, Roles: []string{name}})
	}
	extra, err := yaml.Marshal(mutants)
	if err != nil {
		t.Fatal(err)
	}
	file := append(append(slices.Clone(mappings.ElasticsearchRoles), "\n# probes\n"...), extra...)
	const adminPassword = "elastic-Bootstrap-pw"
	cluster := testenv.StartES(t, 1, "512m", testenv.WithSecurity(adminPassword), testenv.WithFileRealm(file, users...))
	node := cluster.Nodes[0].URL()
	ctx := testenv.Context(t, 10*time.Minute)
	pgCfg := testenv.PG(t)

	adminCfg := testenv.DefaultES(node)
	adminCfg.Username, adminCfg.Password = "elastic", adminPassword
	admin, err := esstore.New(adminCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	storeAs := func(user string) *esstore.Store {
		cfg := testenv.DefaultES(node)
		cfg.Username, cfg.Password, cfg.MaxRetries = user, config.Secret(password), 0
		s, err := esstore.New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	r := &roleRun{t: t, ctx: ctx, node: node, password: password, pg: pgCfg}
	r.run(admin)

	// No refusal in any log, and no privilege that only works through a deprecated allowance.
	for _, l := range r.logs {
		if m := refusal.FindString(l.text); m != "" {
			t.Errorf("%s logged %q:\n%s", l.name, m, l.text)
		}
	}
	for _, line := range strings.Split(cluster.DeprecationLog(), "\n") {
		if strings.Contains(line, `"elasticsearch.event.category":"security"`) {
			t.Errorf("the node logged a deprecated use of a privilege: %s", line)
		}
	}

	// Necessary: each privilege, removed, breaks an operation the full role can do.
	today := time.Now().UTC().Truncate(24 * time.Hour)
	f := &roleFixture{url: node, existing: admin.IndexFor(today), existingID: r.hotID,
		sacrificial: admin.IndexFor(time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)), newDay: today.AddDate(0, 0, -30),
		adminPassword: adminPassword, drop: event.Drop{Index: "events-1999.01.01", Day: time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC)}}
	if err := admin.LogDrop(ctx, f.drop); err != nil {
		t.Fatal(err)
	}
	for _, p := range all {
		t.Run(strings.NewReplacer(" ", "/", ":", "_").Replace(p.String()), func(t *testing.T) {
			if p.name == "delete_index" || p.name == "delete" {
				f.sacrificialID = testenv.Name("s")
				ts := time.Date(2001, 1, 1, 1, 0, 0, 0, time.UTC)
				if _, err := testenv.Put(ctx, admin, event.Event{ID: f.sacrificialID, ClientID: "probe", Timestamp: ts, IngestedAt: ts}); err != nil {
					t.Fatal(err)
				}
			}
			probe := probes[p.String()]
			if err := probe(ctx, f, storeAs(mutantUser[p]), mutantUser[p], password); err == nil {
				t.Errorf("%s is not needed: the probe passes without it", p)
			} else {
				t.Logf("without %s: %v", p, err)
			}
			service := strings.TrimPrefix(p.role, "spillway_")
			if err := probe(ctx, f, storeAs(service), service, password); err != nil {
				t.Errorf("the probe fails with the full role %s too, so it proves nothing: %v", p.role, err)
			}
		})
	}
}

// roleRun drives the three binaries, each as its own user, through every path.
type roleRun struct {
	t        *testing.T
	ctx      context.Context
	node     string
	password string
	pg       config.Postgres
	logs     []processLog
	hotID    string // an event still in Elasticsearch at the end
}

type processLog struct{ name, text string }

// env is a service's environment: its own user, the default prefix (roles.yml's names), the
// cold tier and retention horizons of the Heroku recipe, shortened.
func (r *roleRun) env(user string, extra ...string) []string {
	kv := append([]string{
		"SPILLWAY_ELASTICSEARCH_URLS=" + r.node,
		"SPILLWAY_ELASTICSEARCH_USERNAME=" + user,
		"SPILLWAY_ELASTICSEARCH_PASSWORD=" + r.password,
		"SPILLWAY_ELASTICSEARCH_REPLICAS=0",
		"SPILLWAY_SEARCH_COLD_TIER=true",
		"SPILLWAY_SEARCH_COLD_BOUNDARY_REFRESH=100ms",
		"SPILLWAY_SEARCH_QUERY_TIMEOUT=2s",
		"SPILLWAY_INGEST_MAX_PAST_AGE=24h",
		"SPILLWAY_ARCHIVER_POLL_INTERVAL=50ms",
	}, testenv.PGEnv(r.pg)...)
	return testenv.Env(append(kv, extra...)...)
}

// start starts a service as its own user on a free loopback port (no API keys: loopback) and
// waits until it is ready.
func (r *roleRun) start(service string, args []string, extra ...string) (*testenv.Process, string) {
	r.t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(r.t))
	bin := testenv.Build(r.t, "cmd/"+service)
	p := testenv.StartProcess(r.t, service, bin, r.env(service, append(extra, "SPILLWAY_HTTP_ADDR="+addr)...), args...)
	p.WaitHTTP(r.t, "http://"+addr+"/readyz", 3*time.Minute)
	return p, "http://" + addr
}

// stop stops a service gracefully and keeps its log.
func (r *roleRun) stop(p *testenv.Process) {
	r.t.Helper()
	p.Term()
	if err := p.Wait(time.Minute); err != nil {
		r.t.Fatalf("%s: %v\n%s", p.Name, err, p.LogTail(8<<10))
	}
	r.logs = append(r.logs, processLog{p.Name, p.Logs()})
}

// archiver runs one archiver command to completion as the archiver user; exit status 0 expected.
func (r *roleRun) archiver(args ...string) string {
	r.t.Helper()
	cmd := exec.CommandContext(r.ctx, testenv.Build(r.t, "cmd/archiver"), args...)
	cmd.Env = r.env("archiver")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r.logs = append(r.logs, processLog{"archiver " + strings.Join(args, " "), stderr.String()})
	if err != nil {
		r.t.Fatalf("archiver %s: %v\n%s\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func (r *roleRun) run(admin *esstore.Store) {
	t, ctx := r.t, r.ctx
	now := time.Now().UTC()
	today := now.Truncate(24 * time.Hour)
	// Events of the last six UTC days, for two clients: one daily index each.
	var evs []map[string]any
	want := map[string]bool{} // client c1's ids
	for day := 5; day >= 0; day-- {
		for i := 0; i < 4; i++ {
			ts := today.AddDate(0, 0, -day).Add(time.Duration(i) * time.Minute)
			if day == 0 {
				ts = now.Add(-time.Duration(i+1) * time.Second)
			}
			id, client := fmt.Sprintf("d%d-%d", day, i), []string{"c1", "c2"}[i%2]
			evs = append(evs, map[string]any{"id": id, "clientId": client, "type": "t", "timestamp": ts.Format(time.RFC3339Nano), "payload": map[string]any{"n": i}})
			if client == "c1" {
				want[id] = true
			}
		}
	}
	r.hotID = "d0-0"

	// Ingest: installs the template at start, creates each day's index with its first event.
	ingest, ingestURL := r.start("ingest", nil, "SPILLWAY_INGEST_MAX_PAST_AGE=240h")
	postEvents(t, ingestURL, "", evs)
	r.stop(ingest)
	// Again, now that indices exist: the template installation adds its fields to them.
	ingest, ingestURL = r.start("ingest", nil, "SPILLWAY_INGEST_MAX_PAST_AGE=240h")
	postEvents(t, ingestURL, "?wait=searchable", []map[string]any{{"id": "late", "clientId": "c1", "timestamp": now.Format(time.RFC3339Nano)}})
	want["late"] = true

	// The archiver: feed, checkpoints, periodic verify, periodic retention (which keeps the
	// indices it cannot prove archived yet).
	archiver, _ := r.start("archiver", []string{"run"}, "SPILLWAY_ARCHIVER_RETENTION_AFTER=72h", "SPILLWAY_ARCHIVER_VERIFY_INTERVAL=100ms")
	r.waitArchived(len(evs) + 1)
	r.stop(archiver)
	if !strings.Contains(r.logs[len(r.logs)-1].text, `"msg":"verified"`) {
		t.Errorf("archiver run never verified:\n%s", r.logs[len(r.logs)-1].text)
	}
	from, to := today.AddDate(0, 0, -7).Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339)
	r.archiver("verify", "--from", from, "--to", to)
	// Lose a row behind the checkpoints: repair reads it back from Elasticsearch by id.
	conn, err := pgx.Connect(ctx, r.pg.URL.Value())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "DELETE FROM "+pgx.Identifier{r.pg.Schema, "events"}.Sanitize()+" WHERE id = 'd1-0'"); err != nil {
		t.Fatal(err)
	}
	if out := r.archiver("verify", "--from", from, "--to", to, "--repair"); !strings.Contains(out, "repaired 1") {
		t.Errorf("verify --repair: %s", out)
	}
	r.archiver("backfill", "--from", from, "--to", to)
	r.archiver("status")
	r.archiver("retention", "--older-than", "72h", "--apply")
	indices, err := admin.Indices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var days []string
	for _, i := range indices {
		days = append(days, i.Name)
	}
	if slices.Contains(days, admin.IndexFor(today.AddDate(0, 0, -4))) || !slices.Contains(days, admin.IndexFor(today.AddDate(0, 0, -3))) {
		t.Fatalf("after retention --older-than 72h: indices %v", days)
	}

	// Search: pages across the cold boundary, count, get by id from each tier, live streams.
	search, searchURL := r.start("search", nil)
	// /readyz does not wait for the first read of the cold boundary; until then ranges below
	// the ingest horizon answer 503. Wait for the boundary the retention above moved.
	waitMetric(t, searchURL+"/metrics", regexp.MustCompile(`(?m)^spillway_search_tier_boundary_timestamp_seconds [1-9]`))
	q := url.Values{"clientId": {"c1"}, "from": {from}, "to": {to}, "limit": {"3"}}
	got := map[string]bool{}
	for {
		var page struct {
			Events []struct {
				ID string `json:"id"`
			} `json:"events"`
			NextCursor string `json:"nextCursor"`
		}
		getJSON(t, searchURL+"/api/v1/events?"+q.Encode(), &page)
		for _, e := range page.Events {
			got[e.ID] = true
		}
		if page.NextCursor == "" {
			break
		}
		q.Set("cursor", page.NextCursor)
	}
	if len(got) != len(want) {
		t.Errorf("pages returned %d of client c1's %d events: %v", len(got), len(want), sortedKeys(got))
	}
	q.Del("cursor")
	q.Del("limit")
	var count struct{ Count int }
	getJSON(t, searchURL+"/api/v1/events/count?"+q.Encode(), &count)
	if count.Count != len(want) {
		t.Errorf("count %d, want %d", count.Count, len(want))
	}
	for _, id := range []string{"d5-0", r.hotID} { // dropped from Elasticsearch; still there
		var e struct{ ID string }
		getJSON(t, searchURL+"/api/v1/events/"+id, &e)
		if e.ID != id {
			t.Errorf("get %s: %+v", id, e)
		}
	}
	// Four streams: past three, streams share one read of each shard's new events.
	const streams = 4
	seen := make(chan string, streams)
	for i := 0; i < streams; i++ {
		go readStream(ctx, searchURL+"/api/v1/events/stream?clientId=c1", "streamed", seen)
	}
	postUntilStreamed(t, ingestURL, seen, streams)
	r.stop(search)
	r.stop(ingest)
}

// waitArchived waits until `archiver status --json` shows every shard archived up to its
// global checkpoint and n rows archived.
func (r *roleRun) waitArchived(n int) {
	r.t.Helper()
	deadline := time.Now().Add(3 * time.Minute) // a guard against a hang, not a measurement
	for {
		out := r.archiver("status", "--json")
		var st struct {
			RowsArchived int64 `json:"rows_archived"`
			Shards       []struct {
				Checkpoint       int64  `json:"checkpoint"`
				GlobalCheckpoint *int64 `json:"global_checkpoint"`
			} `json:"shards"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			r.t.Fatalf("status --json: %v\n%s", err, out)
		}
		done := st.RowsArchived == int64(n) && len(st.Shards) > 0
		for _, s := range st.Shards {
			done = done && s.GlobalCheckpoint != nil && s.Checkpoint == *s.GlobalCheckpoint
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("the archiver did not archive %d events:\n%s", n, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitMetric waits until a service's /metrics matches re.
func waitMetric(t *testing.T, u string, re *regexp.Regexp) {
	t.Helper()
	deadline := time.Now().Add(time.Minute) // a guard against a hang, not a measurement
	for {
		res, err := http.Get(u)
		if err == nil {
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if re.Match(b) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never matched %s", u, re)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func postEvents(t *testing.T, base, query string, evs []map[string]any) {
	t.Helper()
	b, _ := json.Marshal(evs)
	res, err := http.Post(base+"/api/v1/events"+query, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusCreated || !strings.Contains(string(body), `"accepted":`+strconv.Itoa(len(evs))) {
		t.Fatalf("POST %d events: %d %s", len(evs), res.StatusCode, body)
	}
}

func getJSON(t *testing.T, u string, out any) {
	t.Helper()
	res, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, res.StatusCode, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		t.Fatalf("GET %s: %v: %s", u, err, body)
	}
}

// refusal is how esstore's errors name a refused request (StatusError).
var refusal = regexp.MustCompile(`elasticsearch 40[13] |security_exception`)

var streamedID = regexp.MustCompile(`"id":"(streamed[^"]*)"`)

// readStream reads a live stream until an event whose id starts with prefix arrives, and sends
// that id on seen.
func readStream(ctx context.Context, u, prefix string, seen chan<- string) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if m := streamedID.FindStringSubmatch(sc.Text()); m != nil && strings.HasPrefix(m[1], prefix) {
			seen <- m[1]
			return
		}
	}
}

// postUntilStreamed posts one event at a time (a stream sees only events indexed after it
// opened, and the test cannot tell when that was) until every stream has received one.
func postUntilStreamed(t *testing.T, ingestURL string, seen <-chan string, streams int) {
	t.Helper()
	deadline := time.After(2 * time.Minute) // a guard against a hang, not a measurement
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for n, got := 0, 0; got < streams; {
		select {
		case <-seen:
			got++
		case <-tick.C:
			n++
			postEvents(t, ingestURL, "", []map[string]any{{"id": fmt.Sprintf("streamed-%d", n), "clientId": "c1", "timestamp": time.Now().UTC().Format(time.RFC3339Nano)}})
		case <-deadline:
			t.Fatalf("%d of %d live streams received an event", got, streams)
		}
	}
}

// TestElasticsearchRolesDoc: the role bodies docs/elasticsearch.md gives for the security API
// are roles.yml's, and the table names every privilege.
func TestElasticsearchRolesDoc(t *testing.T) {
	roles := loadESRoles(t)
	doc := string(readFile(t, "docs/elasticsearch.md"))
	bodies := regexp.MustCompile(`(?m)^PUT _security/role/(\S+)\n(\{.*\})$`).FindAllStringSubmatch(doc, -1)
	seen := map[string]bool{}
	for _, m := range bodies {
		var got esRole
		dec := json.NewDecoder(strings.NewReader(m[2]))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Errorf("docs: role %s: %v", m[1], err)
			continue
		}
		want, ok := roles[m[1]]
		if !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("docs: role %s is %+v; roles.yml has %+v", m[1], got, want)
		}
		seen[m[1]] = true
	}
	for name, r := range roles {
		if !seen[name] {
			t.Errorf("docs/elasticsearch.md gives no PUT _security/role/%s", name)
		}
		for _, p := range r.privileges(name) {
			if p.kind != "names" && !strings.Contains(doc, "`"+p.name+"`") {
				t.Errorf("docs/elasticsearch.md does not mention %s", p)
			}
		}
	}
}
