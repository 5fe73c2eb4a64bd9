package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spillway/spillway/pkg/config"
)

// Module is the import path of Spillway's module; Build takes packages under it.
const Module = "github.com/spillway/spillway"

var builds = struct {
	sync.Mutex
	dir  string
	bins map[string]string
	errs map[string]error
}{bins: map[string]string{}, errs: map[string]error{}}

// Build compiles a command of this module (e.g. "cmd/ingest") once per test binary, into a
// temporary directory, and returns the executable's path. Tests run binaries as subprocesses
// because only a process can be killed with -9. Call RemoveBuilds from TestMain to delete them.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	builds.Lock()
	defer builds.Unlock()
	if bin, ok := builds.bins[pkg]; ok {
		return bin
	}
	if err, ok := builds.errs[pkg]; ok {
		t.Fatal(err)
	}
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "spillway-bin")
		if err != nil {
			t.Fatal(err)
		}
		builds.dir = dir
	}
	bin := filepath.Join(builds.dir, path.Base(pkg))
	out, err := exec.Command("go", "build", "-o", bin, Module+"/"+pkg).CombinedOutput()
	if err != nil {
		builds.errs[pkg] = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		t.Fatal(builds.errs[pkg])
	}
	builds.bins[pkg] = bin
	return bin
}

// RemoveBuilds deletes what Build compiled; TestMain calls it after m.Run.
func RemoveBuilds() {
	builds.Lock()
	defer builds.Unlock()
	if builds.dir != "" {
		_ = os.RemoveAll(builds.dir)
	}
	builds.dir, builds.bins = "", map[string]string{}
}

// Env is the environment of a Spillway subprocess: this process's environment without any
// Spillway setting (SPILLWAY_*, and the DATABASE_URL, ELASTICSEARCH_URL, PORT-style aliases the
// configuration also reads), plus kv. The subprocess then sees only what the test chose, not
// the shared services that scripts/services.sh env exported.
func Env(kv ...string) []string {
	var out []string
	for _, e := range os.Environ() {
		name, _, _ := strings.Cut(e, "=")
		switch {
		case strings.HasPrefix(name, "SPILLWAY_"):
		case name == "DATABASE_URL" || name == "PORT" || strings.HasSuffix(name, "ELASTICSEARCH_URL") ||
			name == "BONSAI_URL" || name == "SEARCHBOX_URL":
		default:
			out = append(out, e)
		}
	}
	return append(out, kv...)
}

// ESEnv is the environment that points a Spillway binary at cfg's cluster and index prefix.
func ESEnv(cfg config.Elasticsearch) []string {
	env := []string{
		"SPILLWAY_ELASTICSEARCH_URLS=" + strings.Join(cfg.URLs, ","),
		"SPILLWAY_ELASTICSEARCH_INDEX_PREFIX=" + cfg.IndexPrefix,
		"SPILLWAY_ELASTICSEARCH_SHARDS=" + strconv.Itoa(max(cfg.Shards, 1)),
	}
	if cfg.Replicas != "" {
		env = append(env, "SPILLWAY_ELASTICSEARCH_REPLICAS="+cfg.Replicas)
	}
	return env
}

// PGEnv is the environment that points a Spillway binary at cfg's database and schema.
func PGEnv(cfg config.Postgres) []string {
	return []string{"SPILLWAY_POSTGRES_URL=" + cfg.URL.Value(), "SPILLWAY_POSTGRES_SCHEMA=" + cfg.Schema}
}

// Process is a subprocess started by StartProcess: its stderr and stdout are kept (the JSON
// logs), and it is killed when the test ends if it is still running. Safe for concurrent use.
type Process struct {
	Name string
	cmd  *exec.Cmd
	logs *SyncBuffer

	exited chan struct{} // closed once the process has exited; err is then set
	err    error
}

// StartProcess starts bin with env and args. name labels its logs in test output.
func StartProcess(t testing.TB, name, bin string, env []string, args ...string) *Process {
	t.Helper()
	p := &Process{Name: name, cmd: exec.Command(bin, args...), logs: &SyncBuffer{}, exited: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("%s (pid %d) output, last 8 KiB:\n%s", name, p.Pid(), p.LogTail(8<<10))
		}
	})
	return p
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited is closed once the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Running reports whether the process has not exited yet.
func (p *Process) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Err is the exit error once the process has exited (nil for status 0, or while it runs).
func (p *Process) Err() error {
	select {
	case <-p.exited:
		return p.err
	default:
		return nil
	}
}

// Kill sends SIGKILL — a crash: nothing runs after it — and waits for the exit.
func (p *Process) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// Term sends SIGTERM, the start of a graceful shutdown; Wait for its end.
func (p *Process) Term() { _ = p.cmd.Process.Signal(syscall.SIGTERM) }

// Wait waits for the exit and returns the exit error (nil for status 0). After timeout — a
// guard against a hang, not a measurement — it kills the process and says so.
func (p *Process) Wait(timeout time.Duration) error {
	select {
	case <-p.exited:
		return p.err
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("%s did not exit within %s: killed", p.Name, timeout)
	}
}

// Logs is everything the process wrote so far.
func (p *Process) Logs() string { return p.logs.String() }

// LogTail is the last n bytes of Logs.
func (p *Process) LogTail(n int) string {
	s := p.logs.String()
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// RSS is the process's resident set size in bytes (VmRSS in /proc/<pid>/status).
func (p *Process) RSS() (int64, error) { return RSS(p.Pid()) }

// RSS reads VmRSS of a process from /proc/<pid>/status, in bytes.
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest) // "12345 kB"
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("VmRSS: unexpected %q", line)
			}
			kb, err := strconv.ParseInt(f[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS (a zombie?)")
}

// WaitHTTP waits until GET url answers 200 and fails the test if the process exits first or
// timeout (a guard against a hang) passes.
func (p *Process) WaitHTTP(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	var last string
	for {
		res, err := client.Get(url)
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(res.Body, 1024))
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("%d %s", res.StatusCode, b)
		} else {
			last = err.Error()
		}
		select {
		case <-p.exited:
			t.Fatalf("%s exited (%v) before %s answered 200:\n%s", p.Name, p.err, url, p.LogTail(8<<10))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s did not answer 200 within %s (last: %s)", p.Name, url, timeout, last)
		}
	}
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers: captured logs of processes and
// of in-process services under test.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
