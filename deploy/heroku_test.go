package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/config"
)

// appJSON is Heroku's app.json manifest; decoding rejects keys the schema does not have.
type appJSON struct {
	Name        string              `json:"name"`
	Description string              `json:"description"`
	Keywords    []string            `json:"keywords"`
	Website     string              `json:"website,omitempty"`
	Repository  string              `json:"repository,omitempty"`
	Logo        string              `json:"logo,omitempty"`
	SuccessURL  string              `json:"success_url,omitempty"`
	Scripts     map[string]string   `json:"scripts,omitempty"`
	Env         map[string]appEnv   `json:"env"`
	Formation   map[string]appDynos `json:"formation"`
	Addons      []appAddon          `json:"addons"`
	Buildpacks  []struct {
		URL string `json:"url"`
	} `json:"buildpacks"`
	Environments map[string]any `json:"environments,omitempty"`
	Stack        string         `json:"stack,omitempty"`
	Image        string         `json:"image,omitempty"`
}

type appEnv struct {
	Description string `json:"description"`
	Value       string `json:"value"`
	Required    *bool  `json:"required"`
	Generator   string `json:"generator"`
}

type appDynos struct {
	Quantity int    `json:"quantity"`
	Size     string `json:"size"`
}

type appAddon struct {
	Plan    string         `json:"plan"`
	As      string         `json:"as,omitempty"`
	Options map[string]any `json:"options,omitempty"`
}

// Heroku Postgres plans' connection limits and storage in GB (Heroku Dev Center, "Choosing the
// Right Heroku Postgres Plan"; Standard and Premium plans of one number share both).
var (
	postgresConnLimits = map[string]int{
		"essential-0": 20, "essential-1": 20, "essential-2": 40,
		"standard-0": 120, "premium-0": 120, "standard-2": 400, "premium-2": 400,
		"standard-3": 500, "standard-4": 500, "standard-5": 500, "standard-6": 500,
		"standard-7": 500, "standard-8": 500, "standard-9": 500, "premium-9": 500,
	}
	postgresStorageGB = map[string]float64{
		"essential-0": 1, "essential-1": 10, "essential-2": 32,
		"standard-0": 64, "premium-0": 64, "standard-2": 256, "premium-2": 256,
		"standard-3": 512, "standard-4": 768, "standard-5": 1000, "standard-6": 1500,
		"standard-7": 2000, "standard-8": 3000, "standard-9": 4000, "premium-9": 4000,
	}
)

// The recipe's sizing (docs/heroku.md): this many archiver and search dynos fit the plan's
// connections with headroom left for psql, one-off dynos and Heroku's own monitoring; the
// archive holds archivePruneDays days of the users' volume on the plan's storage.
const (
	maxArchiverDynos = 2
	maxSearchDynos   = 8
	connHeadroom     = 20
	herokuSIGKILL    = 30 * time.Second // Heroku kills a dyno this long after SIGTERM

	eventsPerSecond = 1000 // the users' average; 2,000 at peak, absorbed by the archiver's lag
	eventsPerDay    = eventsPerSecond * 86400
	// archivePruneDays is `archiver prune --older-than` of the recipe's daily Scheduler job. The
	// archive then holds at most this many whole days, the day before (until the job runs) and
	// today.
	archivePruneDays = 8
	// diskFill is the part of a plan's storage the archive may fill: the rest is for WAL,
	// bloat between autovacuums and the partition being written.
	diskFill = 0.85
	// maxShardGB bounds a primary shard of a daily index (Elastic's advice: 10-50 GB).
	maxShardGB = 50
)

// herokuApp is one Heroku app of the recipe and the roles its processes run.
type herokuApp struct {
	file  string
	role  string        // SPILLWAY_ROLE: what its web process runs
	roles []config.Role // what its processes run
}

var herokuApps = []herokuApp{
	{"app.json", "ingest", []config.Role{config.RoleIngest, config.RoleArchiver}},
	{"deploy/heroku-search.app.json", "search", []config.Role{config.RoleSearch}},
}

// launcherVars are read by the Procfile's launchers, not by the configuration loader.
var launcherVars = map[string]string{
	"SPILLWAY_ROLE":                  "scripts/heroku-web.sh",
	"ARCHIVER_ELASTICSEARCH_URL":     "scripts/heroku-worker.sh",
	"ARCHIVER_ELASTICSEARCH_API_KEY": "scripts/heroku-worker.sh",
}

func loadProcfile(t *testing.T) map[string]string {
	t.Helper()
	procs := map[string]string{}
	for i, line := range strings.Split(strings.TrimSpace(string(readFile(t, "Procfile"))), "\n") {
		m := regexp.MustCompile(`^([A-Za-z0-9_-]+):\s*(\S.*)$`).FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("Procfile:%d: %q is not `type: command`", i+1, line)
		}
		if _, dup := procs[m[1]]; dup {
			t.Fatalf("Procfile: process type %s twice", m[1])
		}
		procs[m[1]] = m[2]
	}
	return procs
}

func loadAppJSON(t *testing.T, file string) appJSON {
	t.Helper()
	var app appJSON
	dec := json.NewDecoder(bytes.NewReader(readFile(t, file)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&app); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return app
}

// appEnv is what the manifest's env gives the processes, plus what Heroku adds: the add-on's
// DATABASE_URL (attached to the search app) and, for web dynos, PORT.
func (app appJSON) environment(t *testing.T, file string) map[string]string {
	t.Helper()
	known := knownEnv()
	env := map[string]string{}
	for name, v := range app.Env {
		if !regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`).MatchString(name) {
			t.Errorf("%s: env %s: not a valid variable name", file, name)
		}
		if v.Description == "" {
			t.Errorf("%s: env %s: no description", file, name)
		}
		if v.Generator != "" && v.Generator != "secret" {
			t.Errorf("%s: env %s: generator %q (only secret exists)", file, name, v.Generator)
		}
		switch {
		case launcherVars[name] != "":
		case strings.HasPrefix(name, "SPILLWAY_"):
			if _, ok := known[name]; !ok {
				t.Errorf("%s: env %s is not a configuration key's variable (config.Keys)", file, name)
			}
		default:
			if !loaderReads(t, name) {
				t.Errorf("%s: env %s: the configuration loader ignores it", file, name)
			}
		}
		switch {
		case v.Value != "":
			env[name] = v.Value
		case v.Generator == "secret":
			env[name] = strings.Repeat("s", 64)
		}
	}
	env["DATABASE_URL"] = "postgres://u:p@ec2-0-0-0-0.compute-1.amazonaws.com:5432/d"
	env["ELASTICSEARCH_URL"] = "https://u:p@example.es.io:443"
	env["PORT"] = "31337"
	return env
}

// TestHeroku checks the Procfile and the two apps' manifests against the code: the processes
// start binaries that exist under cmd/ (through the launchers), every variable is one the
// configuration loader or a launcher reads, the values load for every role each app runs, the
// shutdown grace fits Heroku's SIGTERM window, the settings both apps must share agree, the
// cursor key is generated once, in the search app only, only the ingest app creates a database
// and runs the archiver, and the plan's connections and storage hold the users' volume.
func TestHeroku(t *testing.T) {
	procs := loadProcfile(t)
	for typ, want := range map[string]string{"web": "scripts/heroku-web.sh", "worker": "scripts/heroku-worker.sh"} {
		if procs[typ] != want {
			t.Errorf("%s: %q, want the launcher %s", typ, procs[typ], want)
		}
		if fi, err := os.Stat(filepath.Join(root, want)); err != nil || fi.Mode()&0o111 == 0 {
			t.Errorf("%s missing or not executable: %v", want, err)
		}
	}
	for typ, cmd := range procs {
		if typ != "web" && typ != "worker" {
			t.Errorf("process type %s: %q (only web and worker are expected)", typ, cmd)
		}
	}

	cfgs := map[config.Role]*config.Config{}
	var plan string
	for _, h := range herokuApps {
		app := loadAppJSON(t, h.file)
		if app.Name == "" || len(app.Name) > 30 || app.Description == "" {
			t.Errorf("%s: name %q (at most 30 characters) and a description are required", h.file, app.Name)
		}
		if len(app.Buildpacks) != 1 || app.Buildpacks[0].URL != "heroku/go" {
			t.Errorf("%s: buildpacks %+v, want heroku/go", h.file, app.Buildpacks)
		}
		for typ := range app.Formation {
			if _, ok := procs[typ]; !ok {
				t.Errorf("%s: formation %s is not a Procfile process type", h.file, typ)
			}
		}
		if v := app.Env["SPILLWAY_ROLE"].Value; v != h.role {
			t.Errorf("%s: SPILLWAY_ROLE %q, want %s", h.file, v, h.role)
		}
		if app.Env["SPILLWAY_AUTH_KEYS_FILE"].Description == "" && app.Env["SPILLWAY_AUTH_KEYS"].Description == "" {
			t.Errorf("%s: no way to configure API keys", h.file)
		}
		cursor, hasCursor := app.Env["SPILLWAY_SEARCH_CURSOR_KEY"]
		workers := app.Formation["worker"].Quantity
		var pg []string
		for _, a := range app.Addons {
			if p, ok := strings.CutPrefix(a.Plan, "heroku-postgresql:"); ok {
				pg = append(pg, p)
			}
		}
		switch h.role {
		case "ingest":
			// Only search signs cursors; a key here would be a second, unused one.
			if hasCursor {
				t.Errorf("%s: SPILLWAY_SEARCH_CURSOR_KEY: ingest never uses it (the search app generates the one key)", h.file)
			}
			if workers < 1 || workers > maxArchiverDynos {
				t.Errorf("%s: formation worker %d: want 1..%d archiver dynos", h.file, workers, maxArchiverDynos)
			}
			if len(pg) != 1 {
				t.Fatalf("%s: heroku-postgresql add-ons %v, want one", h.file, pg)
			}
			plan = pg[0]
		case "search":
			// One value, generated when the app is created and shared by all its dynos.
			if !hasCursor || cursor.Generator != "secret" || cursor.Value != "" {
				t.Errorf("%s: SPILLWAY_SEARCH_CURSOR_KEY %+v, want generator secret", h.file, cursor)
			}
			// A second archiver, or a second database, would be wrong: the ingest app has both.
			if workers != 0 || len(app.Addons) != 0 {
				t.Errorf("%s: %d workers, add-ons %+v: the search app attaches the ingest app's database and runs no archiver", h.file, workers, app.Addons)
			}
		}

		env := app.environment(t, h.file)
		for _, role := range h.roles {
			cfg, _, err := config.Load(role, nil, nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
			if err != nil {
				t.Fatalf("%s: %s: config.Load with the manifest's environment: %v", h.file, role, err)
			}
			cfgs[role] = cfg
			if cfg.HTTP.Addr != ":31337" && role != config.RoleArchiver {
				t.Errorf("%s: %s listens on %q, not on $PORT", h.file, role, cfg.HTTP.Addr)
			}
			if cfg.HTTP.ShutdownGrace >= herokuSIGKILL {
				t.Errorf("%s: %s: http.shutdown_grace %s is not below Heroku's %s SIGTERM window", h.file, role, cfg.HTTP.ShutdownGrace, herokuSIGKILL)
			}
			if cfg.Auth.InsecureNoAuth {
				t.Errorf("%s: %s: a public app must not run without API keys", h.file, role)
			}
			if !strings.HasPrefix(cfg.HTTP.AdminAddr, "127.0.0.1:") {
				t.Errorf("%s: %s: http.admin_addr %q: /metrics is for the agent in the dyno, on loopback", h.file, role, cfg.HTTP.AdminAddr)
			}
			if !cfg.Search.ColdTier {
				t.Errorf("%s: %s: search.cold_tier is off: search would not read what retention dropped", h.file, role)
			}
		}
	}

	// The settings retention's safety rests on must be the same in both apps: the archiver
	// computes its grace from search's refresh and timeout, and drops only what search reads
	// from PostgreSQL.
	arch, search := cfgs[config.RoleArchiver], cfgs[config.RoleSearch]
	if arch.Archiver.RetentionAfter <= 0 {
		t.Error("app.json: archiver.retention_after is not set: Elasticsearch would keep every day")
	}
	for key, pair := range map[string][2]any{
		"ingest.max_past_age":          {arch.Ingest.MaxPastAge, search.Ingest.MaxPastAge},
		"search.cold_boundary_refresh": {arch.Search.ColdBoundaryRefresh, search.Search.ColdBoundaryRefresh},
		"search.query_timeout":         {arch.Search.QueryTimeout, search.Search.QueryTimeout},
		"elasticsearch.index_prefix":   {arch.Elasticsearch.IndexPrefix, search.Elasticsearch.IndexPrefix},
		"elasticsearch.shards":         {arch.Elasticsearch.Shards, search.Elasticsearch.Shards},
		"postgres.schema":              {arch.Postgres.Schema, search.Postgres.Schema},
	} {
		if pair[0] != pair[1] {
			t.Errorf("%s differs between the apps: %v (ingest app) and %v (search app)", key, pair[0], pair[1])
		}
	}

	// Connections: every archiver and search dyno at its cap, with headroom.
	limit, ok := postgresConnLimits[plan]
	if !ok {
		t.Fatalf("app.json: heroku-postgresql plan %q is not in the table", plan)
	}
	used := maxArchiverDynos*int(arch.Postgres.MaxConns) + maxSearchDynos*int(search.Search.PostgresMaxConns)
	if used+connHeadroom > limit {
		t.Errorf("%d archiver dynos x %d + %d search dynos x %d = %d connections; %s allows %d (keep %d spare)",
			maxArchiverDynos, arch.Postgres.MaxConns, maxSearchDynos, search.Search.PostgresMaxConns, used, plan, limit, connHeadroom)
	}
	// Storage: the days the archive holds at the users' volume of the largest events.
	perDayGB := float64(eventsPerDay) * float64(eventSizes[0].Archive) / 1e9
	if need := float64(archivePruneDays+2) * perDayGB / diskFill; need > postgresStorageGB[plan] {
		t.Errorf("(%d + 2) days x %.0f GB/day / %.2f = %.0f GB; %s holds %.0f GB", archivePruneDays, perDayGB, diskFill, need, plan, postgresStorageGB[plan])
	}
	// Elasticsearch: a day's primaries spread over shards of at most maxShardGB.
	if gb := float64(eventsPerDay) * float64(eventSizes[0].Index) / 1e9 / float64(arch.Elasticsearch.Shards); gb > maxShardGB {
		t.Errorf("a day's index is %.0f GB per primary shard with %d shards: more than %d GB", gb, arch.Elasticsearch.Shards, maxShardGB)
	}

	gomod := string(readFile(t, "go.mod"))
	goLine := goLineRE.FindStringSubmatch(gomod)
	if !strings.Contains(gomod, "\n// +heroku goVersion go"+goLine[1]+"\n") {
		t.Errorf("go.mod lacks `// +heroku goVersion go%s` (the buildpack's Go must match the go line)", goLine[1])
	}
	// The buildpack installs exactly the services: every binary the Procfile runs, and not the
	// benchmark tooling (which would pull its plotting library into the slug).
	if !strings.Contains(gomod, "\n// +heroku install ./cmd/ingest ./cmd/search ./cmd/archiver\n") {
		t.Error("go.mod lacks `// +heroku install ./cmd/ingest ./cmd/search ./cmd/archiver`: the buildpack must install every binary the Procfile runs")
	}
}

// loaderReads reports whether setting variable name changes the loaded configuration.
func loaderReads(t *testing.T, name string) bool {
	t.Helper()
	base := testenv.LoadConfig(t, config.RoleIngest)
	for _, v := range []string{"https://u:p@sentinel.example:9243", "postgres://u:p@sentinel.example:5432/d", "4242"} {
		cfg, _, err := config.Load(config.RoleIngest, nil, nil, func(k string) (string, bool) {
			if k == name {
				return v, true
			}
			return "", false
		})
		if err == nil && !reflect.DeepEqual(cfg, base) {
			return true
		}
	}
	return false
}

// TestHerokuWebLauncher runs scripts/heroku-web.sh with stand-in binaries on PATH: it must exec
// the role's binary with its arguments, and refuse a missing or unknown role.
func TestHerokuWebLauncher(t *testing.T) {
	bin := t.TempDir()
	for _, name := range []string{"ingest", "search", "archiver"} {
		script := "#!/bin/sh\necho \"" + name + " $*\"\n"
		if err := os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	launcher, err := filepath.Abs(filepath.Join(root, "scripts/heroku-web.sh"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		role     string
		wantOut  string
		wantExit int
	}{
		{"ingest", "ingest --log.level debug\n", 0},
		{"search", "search --log.level debug\n", 0},
		{"archiver", "set it to ingest or search", 2},
		{"", "set it to ingest or search", 2},
		{"ingest; echo pwned", "set it to ingest or search", 2},
	}
	for _, tc := range tests {
		cmd := exec.Command(launcher, "--log.level", "debug")
		cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "SPILLWAY_ROLE=" + tc.role}
		out, err := cmd.CombinedOutput()
		exit := 0
		if ee, ok := err.(*exec.ExitError); ok {
			exit = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if exit != tc.wantExit || !strings.Contains(string(out), tc.wantOut) {
			t.Errorf("SPILLWAY_ROLE=%q: exit %d, output %q; want exit %d and %q", tc.role, exit, out, tc.wantExit, tc.wantOut)
		}
	}
}

// TestHerokuWorkerLauncher runs scripts/heroku-worker.sh with a stand-in archiver on PATH: it
// must exec `archiver run`, and hand the ARCHIVER_ELASTICSEARCH_* credentials to it alone.
func TestHerokuWorkerLauncher(t *testing.T) {
	if !binaries(t)["archiver"] {
		t.Fatal("no cmd/archiver")
	}
	bin := t.TempDir()
	script := "#!/bin/sh\necho \"archiver $* urls=${SPILLWAY_ELASTICSEARCH_URLS:-} key=${SPILLWAY_ELASTICSEARCH_API_KEY:-}\"\n"
	if err := os.WriteFile(filepath.Join(bin, "archiver"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	launcher, err := filepath.Abs(filepath.Join(root, "scripts/heroku-worker.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{nil, "archiver run urls= key=\n"},
		{[]string{"SPILLWAY_ELASTICSEARCH_API_KEY=ingest-key"}, "archiver run urls= key=ingest-key\n"},
		{[]string{"SPILLWAY_ELASTICSEARCH_API_KEY=ingest-key", "ARCHIVER_ELASTICSEARCH_URL=https://archiver:pw@es:443"},
			"archiver run urls=https://archiver:pw@es:443 key=\n"},
		{[]string{"SPILLWAY_ELASTICSEARCH_API_KEY=ingest-key", "ARCHIVER_ELASTICSEARCH_API_KEY=archiver-key"},
			"archiver run urls= key=archiver-key\n"},
	} {
		cmd := exec.Command(launcher)
		cmd.Env = append([]string{"PATH=" + bin + ":/usr/bin:/bin"}, tc.env...)
		out, err := cmd.CombinedOutput()
		if err != nil || string(out) != tc.want {
			t.Errorf("%v: %q %v, want %q", tc.env, out, err, tc.want)
		}
	}
}

// TestHerokuMetricsAgent: the agent configuration scrapes the admin listener both manifests set,
// and takes Spillway's metrics.
func TestHerokuMetricsAgent(t *testing.T) {
	var conf struct {
		Instances []struct {
			Endpoint string   `yaml:"openmetrics_endpoint"`
			Metrics  []string `yaml:"metrics"`
		} `yaml:"instances"`
	}
	if err := yaml.Unmarshal(readFile(t, "datadog/conf.d/openmetrics.yaml"), &conf); err != nil || len(conf.Instances) != 1 {
		t.Fatalf("datadog/conf.d/openmetrics.yaml: %v %+v", err, conf)
	}
	in := conf.Instances[0]
	for _, h := range herokuApps {
		addr := loadAppJSON(t, h.file).Env["SPILLWAY_HTTP_ADMIN_ADDR"].Value
		if in.Endpoint != "http://"+addr+"/metrics" {
			t.Errorf("the agent scrapes %s; %s serves metrics on %s", in.Endpoint, h.file, addr)
		}
	}
	if !slices.Contains(in.Metrics, "spillway_.*") {
		t.Errorf("metrics %v do not take spillway_*", in.Metrics)
	}
}

// TestHerokuDocArithmetic recomputes docs/heroku.md's table of days each plan holds from the
// measured figures, and checks the recipe's prune horizon and figures appear as tested.
func TestHerokuDocArithmetic(t *testing.T) {
	doc := string(readFile(t, "docs/heroku.md"))
	days := func(plan string, bytesPerEvent int) string {
		perDay := float64(eventsPerDay) * float64(bytesPerEvent) / 1e9
		d := int(postgresStorageGB[plan]*diskFill/perDay) - 2
		if d < 1 {
			return "— (not even one)"
		}
		return strconv.Itoa(d)
	}
	rows := regexp.MustCompile(`(?m)^\| (standard-\d) \([^)]*\) \| ([^|]+) \| ([^|]+) \|$`).FindAllStringSubmatch(doc, -1)
	if len(rows) < 5 {
		t.Fatalf("docs/heroku.md: %d plan rows", len(rows))
	}
	for _, r := range rows {
		if got, want := strings.TrimSpace(r[2]), days(r[1], eventSizes[0].Archive); got != want {
			t.Errorf("docs/heroku.md: %s holds %s days of 5 KB events, the arithmetic says %s", r[1], got, want)
		}
		if got, want := strings.TrimSpace(r[3]), days(r[1], eventSizes[1].Archive); got != want {
			t.Errorf("docs/heroku.md: %s holds %s days of 1 KB events, the arithmetic says %s", r[1], got, want)
		}
	}
	for _, want := range []string{
		fmt.Sprintf("archiver prune --older-than %dd --apply", archivePruneDays),
		fmt.Sprintf("**%s B**", thousands(eventSizes[0].Archive)), fmt.Sprintf("**%s B**", thousands(eventSizes[0].Index)),
		fmt.Sprintf("**%s B**", thousands(eventSizes[1].Archive)), fmt.Sprintf("**%s B**", thousands(eventSizes[1].Index)),
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("docs/heroku.md does not say %q", want)
		}
	}
}

// thousands writes n with a comma between thousands, as the documentation does.
func thousands(n int) string {
	s := strconv.Itoa(n)
	if len(s) > 3 {
		return s[:len(s)-3] + "," + s[len(s)-3:]
	}
	return s
}
