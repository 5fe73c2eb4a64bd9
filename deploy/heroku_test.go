package deploy

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/testenv"
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

// postgresConnLimits are Heroku Postgres plans' connection limits (Heroku Dev Center, "Choosing
// the Right Heroku Postgres Plan").
var postgresConnLimits = map[string]int{
	"essential-0": 20, "essential-1": 20, "essential-2": 40,
	"standard-0": 120, "premium-0": 120, "standard-2": 400, "premium-2": 400,
}

// Sizing the README promises for the default plan: this many archiver and search dynos fit,
// with headroom left for psql, one-off dynos and Heroku's own monitoring.
const (
	maxArchiverDynos = 2
	maxSearchDynos   = 4
	connHeadroom     = 4
	herokuSIGKILL    = 30 * time.Second // Heroku kills a dyno this long after SIGTERM
)

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

// TestHeroku checks Procfile, app.json and go.mod's buildpack directives against the code: the
// processes start binaries that exist under cmd/ (through the web launcher for web), every
// variable in app.json is one the configuration loader reads, the values load for every role,
// the shutdown grace fits Heroku's SIGTERM window, and the PostgreSQL pools fit the plan's
// connection limit.
func TestHeroku(t *testing.T) {
	bins := binaries(t)
	procs := loadProcfile(t)
	if procs["web"] != "scripts/heroku-web.sh" {
		t.Errorf("web: %q, want the launcher scripts/heroku-web.sh", procs["web"])
	}
	if fi, err := os.Stat(filepath.Join(root, "scripts/heroku-web.sh")); err != nil || fi.Mode()&0o111 == 0 {
		t.Errorf("scripts/heroku-web.sh missing or not executable: %v", err)
	}
	if f := strings.Fields(procs["worker"]); len(f) != 2 || !bins[f[0]] || f[0] != "archiver" || f[1] != "run" {
		t.Errorf("worker: %q, want `archiver run`", procs["worker"])
	}
	for typ, cmd := range procs {
		if typ != "web" && typ != "worker" {
			t.Errorf("process type %s: %q (only web and worker are expected)", typ, cmd)
		}
	}

	var app appJSON
	dec := json.NewDecoder(bytes.NewReader(readFile(t, "app.json")))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&app); err != nil {
		t.Fatalf("app.json: %v", err)
	}
	if l := len(app.Name); l < 3 || l > 30 || app.Description == "" {
		t.Errorf("app.json name %q (3-30 characters) and a description are required", app.Name)
	}
	if len(app.Buildpacks) != 1 || app.Buildpacks[0].URL != "heroku/go" {
		t.Errorf("buildpacks %+v, want heroku/go", app.Buildpacks)
	}
	for typ := range app.Formation {
		if _, ok := procs[typ]; !ok {
			t.Errorf("formation %s is not a Procfile process type", typ)
		}
	}
	if app.Formation["worker"].Quantity < 1 || app.Formation["worker"].Quantity > maxArchiverDynos {
		t.Errorf("formation worker %d: want 1..%d archiver dynos", app.Formation["worker"].Quantity, maxArchiverDynos)
	}

	// Every variable must mean something to the binaries.
	known := knownEnv()
	env := map[string]string{}
	for name, v := range app.Env {
		if !regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`).MatchString(name) {
			t.Errorf("env %s: not a valid variable name", name)
		}
		if v.Description == "" {
			t.Errorf("env %s: no description", name)
		}
		if v.Generator != "" && v.Generator != "secret" {
			t.Errorf("env %s: generator %q (only secret exists)", name, v.Generator)
		}
		switch {
		case name == "SPILLWAY_ROLE": // read by scripts/heroku-web.sh, not by the loader
			if v.Value != "ingest" && v.Value != "search" {
				t.Errorf("SPILLWAY_ROLE %q", v.Value)
			}
		case strings.HasPrefix(name, "SPILLWAY_"):
			if _, ok := known[name]; !ok {
				t.Errorf("env %s is not a configuration key's variable (config.Keys)", name)
			}
		default:
			if !loaderReads(t, name) {
				t.Errorf("env %s: the configuration loader ignores it", name)
			}
		}
		switch {
		case v.Value != "":
			env[name] = v.Value
		case v.Generator == "secret":
			env[name] = strings.Repeat("s", 64)
		case v.Required != nil && *v.Required:
			env[name] = "sha256:" + strings.Repeat("0", 64) + ":writer" // a placeholder value
		}
	}
	// What Heroku adds: the add-on's DATABASE_URL and, for web dynos, PORT.
	env["DATABASE_URL"] = "postgres://u:p@ec2-0-0-0-0.compute-1.amazonaws.com:5432/d"
	env["ELASTICSEARCH_URL"] = "https://u:p@example.es.io:443"
	env["PORT"] = "31337"
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }

	cfgs := map[config.Role]*config.Config{}
	for _, role := range []config.Role{config.RoleIngest, config.RoleSearch, config.RoleArchiver} {
		cfg, _, err := config.Load(role, nil, nil, getenv)
		if err != nil {
			t.Fatalf("%s: config.Load with app.json's environment: %v", role, err)
		}
		cfgs[role] = cfg
		if cfg.HTTP.Addr != ":31337" {
			t.Errorf("%s listens on %q, not on $PORT", role, cfg.HTTP.Addr)
		}
		if cfg.HTTP.ShutdownGrace >= herokuSIGKILL {
			t.Errorf("%s: http.shutdown_grace %s is not below Heroku's %s SIGTERM window", role, cfg.HTTP.ShutdownGrace, herokuSIGKILL)
		}
		if cfg.Auth.InsecureNoAuth {
			t.Errorf("%s: app.json must not run a public app without API keys", role)
		}
	}

	var plan string
	for _, a := range app.Addons {
		if p, ok := strings.CutPrefix(a.Plan, "heroku-postgresql:"); ok {
			plan = p
		}
	}
	limit, ok := postgresConnLimits[plan]
	if !ok {
		t.Fatalf("no heroku-postgresql add-on with a known plan (got %q)", plan)
	}
	used := maxArchiverDynos*int(cfgs[config.RoleArchiver].Postgres.MaxConns) +
		maxSearchDynos*int(cfgs[config.RoleSearch].Search.PostgresMaxConns)
	if used+connHeadroom > limit {
		t.Errorf("%d archiver dynos x %d + %d search dynos x %d = %d connections; %s allows %d (keep %d spare)",
			maxArchiverDynos, cfgs[config.RoleArchiver].Postgres.MaxConns, maxSearchDynos,
			cfgs[config.RoleSearch].Search.PostgresMaxConns, used, plan, limit, connHeadroom)
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
