package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spillway/spillway/internal/bench"
	"github.com/spillway/spillway/internal/loadgen"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/pgstore"
)

// runner runs the phases in order and fills the report. A phase that fails records why and
// leaves its rows "not measured"; the next phase still runs.
type runner struct {
	plan        plan
	st          *stack
	rep         *bench.Report
	ingestSet   []string
	archiverSet []string
	searchSet   []string
	phases      map[string]bool
	run         string // prefix of this run's index prefixes and schemas

	rawBest    *bench.RawBulkResult
	s1         *loadgen.Result
	s1Capacity float64        // S1's median events/s: the "capacity" S7 offers five times
	cpuExtra   map[string]int // more processes whose CPU a phase accounts for (S8: archiver, proxies)
}

func (r *runner) want(phase string) bool { return len(r.phases) == 0 || r.phases[phase] }

func (r *runner) all(ctx context.Context) {
	phases := []struct {
		name string
		f    func(context.Context) error
	}{
		{"raw", r.rawES},
		{"tune", r.tune}, // only with --only tune
		{"ingest", r.ingest},
		{"archive", r.archive},
		{"wan", r.wan},
		{"streams", r.streams},
		// Last: it stops Elasticsearch, and a node that fails to come back must not cost the others.
		{"overload", r.overload},
	}
	for _, ph := range phases {
		if ctx.Err() != nil {
			return
		}
		if !r.want(ph.name) || (ph.name == "tune" && !r.phases["tune"]) {
			continue
		}
		logf("phase %s", ph.name)
		start := time.Now()
		if err := ph.f(ctx); err != nil {
			logf("phase %s failed: %v", ph.name, err)
			r.rep.Errors = append(r.rep.Errors, fmt.Sprintf("phase %s: %v", ph.name, err))
		}
		logf("phase %s took %s", ph.name, time.Since(start).Round(time.Second))
	}
}

// machine records where the run happens.
func (r *runner) machine(ctx context.Context) {
	m := &r.rep.Machine
	m.Cores = runtime.NumCPU()
	m.Go = runtime.Version()
	m.LoadBefore = loadavg()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				m.MemoryGiB = kb / (1 << 20)
			}
		}
		f.Close()
	}
	var nodes struct {
		Nodes map[string]struct {
			Version string `json:"version"`
		} `json:"nodes"`
	}
	if err := getJSON(ctx, r.st.esURL+"/_nodes/_local?filter_path=nodes.*.version", &nodes); err == nil {
		for _, n := range nodes.Nodes {
			m.Elasticsearch = n.Version + " (private single node, 1 GiB heap)"
		}
	}
	if db, err := bench.OpenDB(ctx, r.st.pgURL, "public", "spillway-bench", 1); err == nil {
		var v string
		if err := db.QueryRow(ctx, "SHOW server_version").Scan(&v); err == nil {
			m.PostgreSQL = strings.Fields(v)[0] + " (private cluster, max_connections 600)"
		}
		db.Close()
	}
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// es opens a store on the private node for an index prefix and installs its template, as
// ingest would, with ingest's default refresh interval: an index the raw baselines create first
// keeps the settings it was created with, and ingest and search are measured on it.
func (r *runner) es(ctx context.Context, prefix string) (*esstore.Store, error) {
	refresh, err := time.ParseDuration(config.Default(config.RoleIngest, "elasticsearch.refresh_interval"))
	if err != nil {
		return nil, fmt.Errorf("default refresh interval: %w", err)
	}
	cfg := config.Elasticsearch{URLs: []string{r.st.esURL}, IndexPrefix: prefix, RefreshInterval: refresh,
		Shards: 1, Replicas: "0-1", RequestTimeout: time.Minute, MaxRetries: 3}
	s, err := esstore.New(cfg, nil)
	if err != nil {
		return nil, err
	}
	if err := s.InstallTemplate(ctx); err != nil {
		return nil, fmt.Errorf("install template for %s: %w", prefix, err)
	}
	return s, nil
}

func (r *runner) pg(ctx context.Context, schema, app string, conns int32) (*pgstore.Store, error) {
	return pgstore.Open(ctx, config.Postgres{URL: config.Secret(r.st.pgURL), MaxConns: conns, Schema: schema,
		ConnectTimeout: 10 * time.Second}, pgstore.Options{ApplicationName: app}, nil)
}

// indexStats is what Elasticsearch did to the indices of a prefix so far: refreshes and their
// total time, merges and theirs, and the merges running now.
type indexStats struct {
	Refreshes, RefreshMS, Merges, MergeMS, MergesNow float64
}

func (r *runner) indexStats(ctx context.Context, prefix string) (indexStats, error) {
	var out struct {
		All struct {
			Primaries struct {
				Refresh struct {
					Total  float64 `json:"total"`
					TimeMS float64 `json:"total_time_in_millis"`
				} `json:"refresh"`
				Merges struct {
					Current float64 `json:"current"`
					Total   float64 `json:"total"`
					TimeMS  float64 `json:"total_time_in_millis"`
				} `json:"merges"`
			} `json:"primaries"`
		} `json:"_all"`
	}
	err := getJSON(ctx, r.st.esURL+"/"+prefix+"-*/_stats/refresh,merge?filter_path=_all.primaries.refresh,_all.primaries.merges", &out)
	p := out.All.Primaries
	return indexStats{Refreshes: p.Refresh.Total, RefreshMS: p.Refresh.TimeMS, Merges: p.Merges.Total, MergeMS: p.Merges.TimeMS, MergesNow: p.Merges.Current}, err
}

// count returns the documents under an alias matching query (nil: all) after a refresh.
func (r *runner) count(ctx context.Context, prefix string, query any) (int64, error) {
	var body io.Reader
	if query != nil {
		b, err := json.Marshal(map[string]any{"query": query})
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, r.st.esURL+"/"+prefix+"/_count", body)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusNotFound {
		return 0, nil
	}
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 500))
		return 0, fmt.Errorf("count %s: %d %s", prefix, res.StatusCode, b)
	}
	var out struct {
		Count int64 `json:"count"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return 0, err
	}
	return out.Count, nil
}

func getJSON(ctx context.Context, url string, out any) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d", url, res.StatusCode)
	}
	return json.NewDecoder(res.Body).Decode(out)
}

// spillwayEnv configures a Spillway service for this run. Rate limits are off: the benchmark
// measures capacity, not the per-client limiter.
func (r *runner) spillwayEnv(addr, admin, esURL, prefix, pgURL, schema string) []string {
	// One primary per daily index, like the bench's own store (runner.es): the bench's node is
	// one node of two cores holding a few GB, which the capacity model sizes at 1 (the default,
	// 8, is sized for a day of the users' rate on a cluster). Without this the services
	// installed the default's template over the bench's and the run measured 8 shards.
	// --ingest-set elasticsearch.shards=N still overrides it for ingest.
	if _, set := r.rep.Settings["elasticsearch.shards"]; !set {
		r.rep.Settings["elasticsearch.shards"] = "1"
	}
	env := []string{
		"SPILLWAY_HTTP_ADDR=" + addr,
		"SPILLWAY_ELASTICSEARCH_URLS=" + esURL,
		"SPILLWAY_ELASTICSEARCH_INDEX_PREFIX=" + prefix,
		"SPILLWAY_ELASTICSEARCH_SHARDS=1",
		"SPILLWAY_RATELIMIT_INGEST_EVENTS_PER_SECOND=0",
		"SPILLWAY_RATELIMIT_SEARCH_REQUESTS_PER_SECOND=0",
		"SPILLWAY_LOG_LEVEL=info",
	}
	if admin != "" {
		env = append(env, "SPILLWAY_HTTP_ADMIN_ADDR="+admin)
	}
	if pgURL != "" { // the archiver
		env = append(env, "SPILLWAY_POSTGRES_URL="+pgURL, "SPILLWAY_POSTGRES_SCHEMA="+schema)
		for _, kv := range r.archiverSet {
			if k, v, ok := strings.Cut(kv, "="); ok {
				env = append(env, config.EnvName(k)+"="+v)
				r.rep.Settings[k] = v
			}
		}
	}
	return env
}

// serviceAddrs are free addresses for a service's public and admin listeners.
func serviceAddrs() (addr, admin string, err error) {
	if addr, err = freeAddr(); err != nil {
		return "", "", err
	}
	admin, err = freeAddr()
	return addr, admin, err
}

// searchEnv is the run's search overrides (--search-set) as environment variables.
func (r *runner) searchEnv() []string {
	var env []string
	for _, kv := range r.searchSet {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env = append(env, config.EnvName(k)+"="+v)
			r.rep.Settings[k] = v
		}
	}
	return env
}

// startIngest starts ingest with the run's tuning overrides (--ingest-set) and pprof on an
// admin listener.
func (r *runner) startIngest(ctx context.Context, name, esURL, prefix string) (*proc, error) {
	addr, admin, err := serviceAddrs()
	if err != nil {
		return nil, err
	}
	env := r.spillwayEnv(addr, admin, esURL, prefix, "", "")
	for _, kv := range r.ingestSet {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("--ingest-set %q: want key=value", kv)
		}
		env = append(env, config.EnvName(k)+"="+v)
		r.rep.Settings[k] = v
	}
	p, err := r.st.start(ctx, name, "ingest", nil, env, addr, true)
	if err != nil {
		return nil, err
	}
	p.admin = admin
	return p, nil
}

// profile takes a CPU profile of a service (ingest or search) for d and writes it, with its top functions, to
// out/pprof/name.{pprof,top.txt}. It returns a function that waits for it.
func (r *runner) profile(p *proc, d time.Duration, name string) func() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		c := http.Client{Timeout: d + 30*time.Second}
		res, err := c.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.admin, int(d.Seconds())))
		if err != nil {
			logf("profile %s: %v", name, err)
			return
		}
		defer res.Body.Close()
		file := r.pprofPath(name + ".pprof")
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK || os.WriteFile(file, b, 0o644) != nil {
			logf("profile %s: status %d", name, res.StatusCode)
			return
		}
		top, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=35", p.cmd.Path, file).CombinedOutput()
		if err == nil {
			_ = os.WriteFile(r.pprofPath(name+".top.txt"), top, 0o644)
		}
	}()
	return func() { <-done }
}

// hotThreads saves Elasticsearch's hot threads (busiest threads, sampled over half a second)
// at out/pprof/name.txt: the node's side of a profile.
func (r *runner) hotThreads(ctx context.Context, name string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.st.esURL+"/_nodes/hot_threads?threads=6&interval=500ms&snapshots=10&ignore_idle_threads=true", nil)
	if err != nil {
		return
	}
	res, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		logf("hot threads %s: %v", name, err)
		return
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	_ = os.WriteFile(r.pprofPath(name+".txt"), b, 0o644)
}

// pprofPath is the path of a profile file in out/pprof, which it creates.
func (r *runner) pprofPath(file string) string {
	dir := filepath.Join(r.st.out, "pprof")
	_ = os.MkdirAll(dir, 0o755)
	return filepath.Join(dir, file)
}

// measureCPU starts measuring the cores of pids and of the Elasticsearch node, when it runs.
func (r *runner) measureCPU(pids map[string]int) *cpuShare {
	if pid, err := r.st.esPID(); err == nil {
		pids["elasticsearch"] = pid
	}
	return startCPU(pids)
}

// lgIngest runs the load generator against an ingest process and records its bulk figures.
func (r *runner) lgIngest(ctx context.Context, name string, in *proc, cfg loadgen.Config) (*loadgen.Result, bulkStats, error) {
	before := scrape(in)
	pids := map[string]int{"ingest": in.pid(), "load generator": os.Getpid()}
	for k, v := range r.cpuExtra {
		pids[k] = v
	}
	cpu := r.measureCPU(pids)
	res, err := r.lg(ctx, name, cfg)
	if err != nil {
		return nil, bulkStats{}, err
	}
	st := diffBulk(before, scrape(in))
	st.CPU = cpu.stop()
	r.rep.Runs[name+"_ingest_bulk"] = st
	logf("%s: ingest sent %s", name, st)
	return res, st, nil
}

func (r *runner) lg(ctx context.Context, name string, cfg loadgen.Config) (*loadgen.Result, error) {
	if cfg.Clients == 0 {
		cfg.Clients = 1000
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	res, err := loadgen.Run(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	r.rep.Runs[name] = res
	logf("%s: %.0f events/s, p50 %.1f p99 %.1f p99.9 %.1f max %.1f ms, status %v, unsent %d", name, res.EventsPerSecond,
		res.Latency.P50, res.Latency.P99, res.Latency.P999, res.Latency.Max, res.Status, res.Unsent)
	return res, nil
}

// failed counts requests not answered with 201/202.
func failed(res *loadgen.Result) int64 {
	var n int64
	for k, v := range res.Status {
		if k != "201" && k != "202" {
			n += int64(v)
		}
	}
	return n + res.Unsent
}

func statusText(m map[string]int) string {
	var b bytes.Buffer
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sortStrings(keys)
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s×%s", k, bench.Num(float64(m[k])))
	}
	return b.String()
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
