package deploy

import (
	"net"
	"path"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/spillway/spillway/pkg/auth"
	"github.com/spillway/spillway/pkg/config"
)

// composeFile is the part of docker-compose.yml the checks read. yaml.v3 resolves the `<<`
// merge keys, so services see the shared x-spillway blocks as Compose does.
type composeFile struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image           string                       `yaml:"image"`
	Build           *composeBuild                `yaml:"build"`
	Command         []string                     `yaml:"command"`
	Entrypoint      []string                     `yaml:"entrypoint"`
	Environment     map[string]string            `yaml:"environment"`
	Ports           []string                     `yaml:"ports"`
	Volumes         []string                     `yaml:"volumes"`
	DependsOn       map[string]composeDependency `yaml:"depends_on"`
	Healthcheck     *composeHealthcheck          `yaml:"healthcheck"`
	Restart         string                       `yaml:"restart"`
	StopGracePeriod string                       `yaml:"stop_grace_period"`
}

type composeBuild struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

type composeDependency struct {
	Condition string `yaml:"condition"`
}

type composeHealthcheck struct {
	Test        []string `yaml:"test"`
	Interval    string   `yaml:"interval"`
	Timeout     string   `yaml:"timeout"`
	StartPeriod string   `yaml:"start_period"`
	Retries     int      `yaml:"retries"`
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	var c composeFile
	if err := yaml.Unmarshal(readFile(t, "docker-compose.yml"), &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	if c.Name == "" || len(c.Services) == 0 {
		t.Fatal("docker-compose.yml: no project name or no services")
	}
	return c
}

// goBinary returns the Spillway binary a service runs ("ingest"), or "" for other images.
func goBinary(s composeService) string {
	if s.Build == nil || len(s.Command) == 0 {
		return ""
	}
	return strings.TrimPrefix(s.Command[0], "/usr/local/bin/")
}

var esVersionRE = regexp.MustCompile(`ES_VERSION="\$\{SPILLWAY_ES_VERSION:-([0-9.]+)\}"`)

// TestCompose checks docker-compose.yml against the code: every service has an image or a build,
// health checks where something waits on them, depends_on targets that exist and are healthy,
// declared volumes, loopback-only ports, and — for the Go services — a binary that exists under
// cmd/, an environment that pkg/config loads without error, a health check on their own /readyz,
// and a stop window longer than their shutdown grace.
func TestCompose(t *testing.T) {
	c := loadCompose(t)
	bins := binaries(t)
	env := knownEnv()

	m := esVersionRE.FindSubmatch(readFile(t, "scripts/services.sh"))
	if m == nil {
		t.Fatal("scripts/services.sh: ES_VERSION not found")
	}
	esVersion := string(m[1])

	usedVolumes := map[string]bool{}
	hostPorts := map[string]string{}
	goServices := 0
	for _, name := range sortedKeys(c.Services) {
		s := c.Services[name]
		t.Run(name, func(t *testing.T) {
			if s.Image == "" && s.Build == nil {
				t.Fatal("neither image nor build")
			}
			oneShot := s.Restart == "no"
			if s.Healthcheck == nil && !oneShot {
				t.Error("long-running service without a healthcheck")
			}
			if hc := s.Healthcheck; hc != nil {
				checkHealthcheck(t, hc)
			}
			for dep, d := range s.DependsOn {
				target, ok := c.Services[dep]
				switch {
				case !ok:
					t.Errorf("depends_on %q: no such service", dep)
				case d.Condition == "service_healthy" && target.Healthcheck == nil:
					t.Errorf("depends_on %q: service_healthy, but %s has no healthcheck", dep, dep)
				case d.Condition == "service_completed_successfully" && target.Restart != "no":
					t.Errorf("depends_on %q: service_completed_successfully on a service that restarts", dep)
				case d.Condition != "service_healthy" && d.Condition != "service_started" && d.Condition != "service_completed_successfully":
					t.Errorf("depends_on %q: condition %q", dep, d.Condition)
				}
			}
			for _, v := range s.Volumes {
				src, _, _ := strings.Cut(v, ":")
				if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
					if !exists(src) {
						t.Errorf("bind mount %s: %s does not exist", v, src)
					}
					continue
				}
				usedVolumes[src] = true
				if _, ok := c.Volumes[src]; !ok {
					t.Errorf("volume %s is not declared under volumes:", src)
				}
			}
			for _, p := range s.Ports {
				// Everything runs without credentials: publish on loopback only.
				parts := strings.Split(p, ":")
				if len(parts) != 3 || parts[0] != "127.0.0.1" {
					t.Errorf("port %q: publish as 127.0.0.1:HOST:CONTAINER (the stack has no credentials)", p)
					continue
				}
				if other, dup := hostPorts[parts[1]]; dup {
					t.Errorf("host port %s also published by %s", parts[1], other)
				}
				hostPorts[parts[1]] = name
			}
			if strings.HasPrefix(s.Image, "docker.elastic.co/") && !strings.HasSuffix(s.Image, ":"+esVersion) {
				t.Errorf("image %s: want version %s, the one scripts/services.sh and the tests run", s.Image, esVersion)
			}
			if strings.HasPrefix(s.Image, "docker.elastic.co/elasticsearch/") && s.Environment["xpack.security.enabled"] != "false" {
				// Security on would need credentials for Kibana and the services; see README.
				t.Errorf("Elasticsearch security is %q; the local stack documents it as off", s.Environment["xpack.security.enabled"])
			}
			if s.Build != nil {
				goServices++
				checkGoService(t, name, s, bins, env)
			}
		})
	}
	for v := range c.Volumes {
		if !usedVolumes[v] {
			t.Errorf("volume %s is declared but unused", v)
		}
	}
	if goServices != 3 {
		t.Errorf("%d services built from the Dockerfile, want ingest, search and archiver", goServices)
	}
	if c.Services["kibana"].Healthcheck == nil {
		t.Error("no kibana service with a healthcheck for the saved-objects import to wait on")
	}
	checkKibanaSetup(t, c)
}

func checkHealthcheck(t *testing.T, hc *composeHealthcheck) {
	if len(hc.Test) < 2 || (hc.Test[0] != "CMD" && hc.Test[0] != "CMD-SHELL") {
		t.Errorf("healthcheck test %q: want [CMD, ...] or [CMD-SHELL, cmd]", hc.Test)
	}
	for what, d := range map[string]string{"interval": hc.Interval, "timeout": hc.Timeout, "start_period": hc.StartPeriod} {
		if d == "" {
			continue
		}
		if v, err := time.ParseDuration(d); err != nil || v <= 0 {
			t.Errorf("healthcheck %s %q is not a positive duration", what, d)
		}
	}
	if hc.Interval == "" || hc.Timeout == "" || hc.Retries < 1 {
		t.Errorf("healthcheck needs interval, timeout and retries: %+v", hc)
	}
}

func checkGoService(t *testing.T, name string, s composeService, bins map[string]bool, env map[string]string) {
	if s.Build.Context != "." || !exists(s.Build.Dockerfile) {
		t.Errorf("build %+v: want context . and an existing Dockerfile", *s.Build)
	}
	bin := goBinary(s)
	if !bins[bin] {
		t.Fatalf("command %q runs %q, which is not a binary under cmd/", s.Command, bin)
	}
	if bin != name {
		t.Errorf("service %s runs the %s binary", name, bin)
	}
	if bin == "archiver" && (len(s.Command) < 2 || s.Command[1] != "run") {
		t.Errorf("archiver command %q: want the `run` subcommand", s.Command)
	}
	for k := range s.Environment {
		if _, ok := env[k]; !ok {
			t.Errorf("environment %s is not a configuration key's variable (config.Keys)", k)
		}
	}
	// The configuration must load exactly as the binary would load it in the container.
	getenv := func(k string) (string, bool) { v, ok := s.Environment[k]; return v, ok }
	cfg, _, err := config.Load(config.Role(bin), nil, nil, getenv)
	if err != nil {
		t.Fatalf("config.Load with the compose environment: %v", err)
	}
	// In a container the services listen on a non-loopback address: the secure-by-default rule
	// must let them start (API keys, or the explicit local-only opt-out).
	if cfg.Auth.KeysFile == "" { // a keys file lives in the container; nothing to load here
		if _, err := auth.New(auth.Options{Keys: cfg.Auth.Keys.Value(), InsecureNoAuth: cfg.Auth.InsecureNoAuth, Addr: cfg.HTTP.Addr}); err != nil {
			t.Errorf("%s would refuse to start: %v", name, err)
		}
	}
	_, port, err := net.SplitHostPort(cfg.HTTP.Addr)
	if err != nil {
		t.Fatalf("http.addr %q: %v", cfg.HTTP.Addr, err)
	}
	published := false
	for _, p := range s.Ports {
		published = published || strings.HasSuffix(p, ":"+port)
	}
	if !published {
		t.Errorf("listen port %s is not published", port)
	}
	hc := s.Healthcheck
	want := []string{"CMD", "/usr/local/bin/healthcheck", "http://127.0.0.1:" + port + "/readyz"}
	if hc == nil || strings.Join(hc.Test, " ") != strings.Join(want, " ") {
		t.Errorf("healthcheck %v, want %q (the image has no shell)", hc, want)
	}
	if !bins["healthcheck"] {
		t.Error("cmd/healthcheck is missing")
	}
	grace, err := time.ParseDuration(s.StopGracePeriod)
	if err != nil || grace <= cfg.HTTP.ShutdownGrace {
		t.Errorf("stop_grace_period %q must exceed http.shutdown_grace %s, or Docker kills the drain", s.StopGracePeriod, cfg.HTTP.ShutdownGrace)
	}
}

// checkKibanaSetup follows the one-shot import service's entrypoint back to files in the repo.
func checkKibanaSetup(t *testing.T, c composeFile) {
	s, ok := c.Services["kibana-setup"]
	if !ok {
		t.Fatal("no kibana-setup service loads the saved objects")
	}
	if s.Restart != "no" || s.DependsOn["kibana"].Condition != "service_healthy" {
		t.Errorf("kibana-setup must run once, after kibana is healthy: %+v", s)
	}
	mounts := map[string]string{} // container path -> host path
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 {
			continue
		}
		mounts[parts[1]] = parts[0]
	}
	hostPath := func(p string) string {
		for dst, src := range mounts {
			if p == dst || strings.HasPrefix(p, dst+"/") {
				return path.Join(src, strings.TrimPrefix(p, dst))
			}
		}
		return ""
	}
	var script, file string
	for _, a := range s.Entrypoint {
		switch {
		case strings.HasSuffix(a, "kibana-import.sh"):
			script = hostPath(a)
		case strings.HasSuffix(a, ".ndjson"):
			file = hostPath(a)
		}
	}
	if script != "scripts/kibana-import.sh" || file != kibanaFile {
		t.Errorf("kibana-setup runs %q on %q; want scripts/kibana-import.sh on %s, mounted from the repo", script, file, kibanaFile)
	}
	if s.Environment["KIBANA_URL"] != "http://kibana:5601" {
		t.Errorf("kibana-setup KIBANA_URL %q", s.Environment["KIBANA_URL"])
	}
}
