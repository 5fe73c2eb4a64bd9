package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// stack is the benchmark's private Elasticsearch node and PostgreSQL cluster, started by
// scripts/services.sh in a state directory of their own on free ports, and the Spillway and
// baseline processes the run starts against them. Nothing shared is touched: the shared
// services at 9200/5432 keep running for the other developers, and S7 stops only this node.
type stack struct {
	repo, bin, out string
	state          string
	esPort, esTP   int
	pgPort         int
	esURL, pgURL   string
	procs          []*proc
}

func newStack(repo, bin, out string) (*stack, error) {
	s := &stack{repo: repo, bin: bin, out: out}
	s.state = fmt.Sprintf("/var/tmp/spillway-bench-%d", os.Getpid())
	if os.Geteuid() != 0 {
		s.state = filepath.Join(os.TempDir(), fmt.Sprintf("spillway-bench-%d", os.Getpid()))
	}
	var err error
	if s.esPort, err = freePort(); err != nil {
		return nil, err
	}
	if s.esTP, err = freePort(); err != nil {
		return nil, err
	}
	if s.pgPort, err = freePort(); err != nil {
		return nil, err
	}
	s.esURL = fmt.Sprintf("http://127.0.0.1:%d", s.esPort)
	s.pgURL = fmt.Sprintf("postgres://spillway:spillway@127.0.0.1:%d/spillway?sslmode=disable", s.pgPort)
	return s, nil
}

// servicesEnv is the environment of scripts/services.sh for the private stack: its own state
// directory and ports, and none of the variables that would make it use the shared services.
func (s *stack) servicesEnv() []string {
	env := cleanEnv()
	return append(env,
		"SPILLWAY_STATE_DIR="+s.state,
		"SPILLWAY_ES_PORT="+strconv.Itoa(s.esPort),
		"SPILLWAY_ES_TRANSPORT_PORT="+strconv.Itoa(s.esTP),
		"SPILLWAY_PG_PORT="+strconv.Itoa(s.pgPort),
		"SPILLWAY_ES_HEAP=1g",
		// The naive design gets the users' pool of up to 500 connections (see BENCHMARKS.md).
		"SPILLWAY_PG_MAX_CONNECTIONS=600",
	)
}

// cleanEnv is this process's environment without any Spillway or service-locating variable,
// so that a child configures itself only from what the benchmark gives it.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "SPILLWAY_"), k == "ELASTICSEARCH_URL", k == "DATABASE_URL", k == "BONSAI_URL",
			k == "FOUNDELASTICSEARCH_URL", k == "SEARCHBOX_URL", k == "PORT":
			continue
		}
		env = append(env, kv)
	}
	return env
}

func (s *stack) services(ctx context.Context, verb string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(s.repo, "scripts", "services.sh"), verb)
	cmd.Env = s.servicesEnv()
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("services.sh %s (private stack in %s): %w", verb, s.state, err)
	}
	return nil
}

// up starts the private stack.
func (s *stack) up(ctx context.Context) error { return s.services(ctx, "up") }

// down stops every process the run started, then the private stack, and removes its data.
func (s *stack) down() {
	for i := len(s.procs) - 1; i >= 0; i-- {
		_ = s.procs[i].stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := s.services(ctx, "down"); err != nil {
		logf("cleanup: %v", err)
	}
	if strings.Contains(s.state, "spillway-bench-") {
		_ = os.RemoveAll(s.state)
	}
}

// esPID is the private Elasticsearch node's process id.
func (s *stack) esPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(s.state, "es", "es.pid"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// stopES stops the private node (SIGTERM, as an orchestrator would) and waits for it to exit.
func (s *stack) stopES() error {
	pid, err := s.esPID()
	if err != nil {
		return fmt.Errorf("stop elasticsearch: %w", err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop elasticsearch: %w", err)
	}
	for i := 0; i < 600 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if syscall.Kill(pid, 0) == nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return nil
}

// proc is a child process: a Spillway service, the naive server or a latency proxy.
type proc struct {
	name  string
	cmd   *exec.Cmd
	log   *os.File
	addr  string // its HTTP or TCP address
	admin string // the service's admin (pprof, metrics) address, when it has one
	done  chan struct{}
}

// start runs binary with args and env (added to the clean environment), logging to
// out/logs/name.log, and waits until addr accepts connections (and answers /readyz when ready
// is set).
func (s *stack) start(ctx context.Context, name, binary string, args, env []string, addr string, ready bool) (*proc, error) {
	if err := os.MkdirAll(filepath.Join(s.out, "logs"), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(s.out, "logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(s.bin, binary), args...)
	cmd.Env = append(cleanEnv(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: f, addr: addr, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	s.procs = append(s.procs, p)
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-p.done:
			return nil, fmt.Errorf("%s exited at start; see %s", name, f.Name())
		case <-ctx.Done():
			return nil, ctx.Err()
		default:
		}
		if ok := up(addr, ready); ok {
			return p, nil
		}
		if time.Now().After(deadline) {
			_ = p.stop()
			return nil, fmt.Errorf("%s did not become ready at %s within 60 s; see %s", name, addr, f.Name())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func up(addr string, ready bool) bool {
	if !ready {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	c := http.Client{Timeout: 2 * time.Second}
	res, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return false
	}
	res.Body.Close()
	return res.StatusCode == http.StatusOK
}

// stop ends the process gracefully (SIGTERM, as an orchestrator would), killing it after 40 s.
func (p *proc) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(40 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.log.Close()
	if st := p.cmd.ProcessState; st != nil && !st.Success() {
		return fmt.Errorf("%s: %s", p.name, st)
	}
	return nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// rss reads the resident set (VmRSS) and its peak (VmHWM) of a process, in bytes.
func rss(pid int) (cur, peak int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		for _, k := range []string{"VmRSS:", "VmHWM:"} {
			if strings.HasPrefix(line, k) {
				fields := strings.Fields(line[len(k):])
				if len(fields) > 0 {
					v, _ := strconv.ParseInt(fields[0], 10, 64)
					if k == "VmRSS:" {
						cur = v * 1024
					} else {
						peak = v * 1024
					}
				}
			}
		}
	}
	if cur == 0 {
		return 0, 0, errors.New("no VmRSS")
	}
	return cur, peak, sc.Err()
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func freeAddr() (string, error) {
	p, err := freePort()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("127.0.0.1:%d", p), nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[bench %s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
