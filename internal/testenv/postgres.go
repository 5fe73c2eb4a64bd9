package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// PGCluster is a private PostgreSQL cluster on a free loopback port, for tests that stop or
// crash the database. It is stopped when the test ends.
type PGCluster struct {
	Port  int
	dir   string
	bin   string
	runAs string
	mu    sync.Mutex
}

// URL connects as the superuser "postgres" (trust authentication on loopback).
func (c *PGCluster) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.Port)
}

func pgBinDir() (string, error) {
	if d := os.Getenv("SPILLWAY_PG_BINDIR"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Strings(dirs)
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "pg_ctl")); err == nil {
			return dirs[i], nil
		}
	}
	return "", fmt.Errorf("no PostgreSQL binaries (install Debian's postgresql, or set SPILLWAY_PG_BINDIR)")
}

// StartPG initialises and starts a private cluster.
func StartPG(t testing.TB) *PGCluster {
	t.Helper()
	bin, err := pgBinDir()
	if err != nil {
		Unavailable(t, "%v", err)
	}
	c := &PGCluster{Port: FreePort(t), bin: bin}
	if os.Geteuid() == 0 {
		c.runAs = "postgres"
	}
	c.dir = scratchDir(t, c.runAs)
	chownR(t, c.dir, c.runAs)
	if out, err := c.run("initdb", "-D", c.data(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"); err != nil {
		t.Fatalf("initdb: %v: %s", err, out)
	}
	conf := fmt.Sprintf("listen_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\nfsync = on\n", c.Port, c.dir)
	f, err := os.OpenFile(filepath.Join(c.data(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(conf)
	f.Close()
	t.Cleanup(func() { _, _ = c.run("pg_ctl", "-D", c.data(), "-m", "immediate", "-w", "stop") })
	c.Start(t)
	return c
}

func (c *PGCluster) data() string { return filepath.Join(c.dir, "data") }

func (c *PGCluster) run(tool string, args ...string) ([]byte, error) {
	path := filepath.Join(c.bin, tool)
	var cmd *exec.Cmd
	if c.runAs != "" {
		cmd = exec.Command("runuser", append([]string{"-u", c.runAs, "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	return cmd.CombinedOutput()
}

// Start starts the cluster and waits until it accepts connections.
func (c *PGCluster) Start(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if out, err := c.run("pg_ctl", "-D", c.data(), "-l", filepath.Join(c.dir, "log"), "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.dir, "log"))
		t.Fatalf("pg_ctl start: %v: %s\n%s", err, out, log)
	}
}

// Stop shuts the cluster down; immediate=true is a crash (no checkpoint, clients cut off).
func (c *PGCluster) Stop(t testing.TB, immediate bool) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	mode := "fast"
	if immediate {
		mode = "immediate"
	}
	if out, err := c.run("pg_ctl", "-D", c.data(), "-m", mode, "-w", "-t", "60", "stop"); err != nil && !strings.Contains(string(out), "not running") {
		t.Fatalf("pg_ctl stop: %v: %s", err, out)
	}
}

// Restart stops (crashing when immediate) and starts the cluster after pause.
func (c *PGCluster) Restart(t testing.TB, immediate bool, pause time.Duration) {
	t.Helper()
	c.Stop(t, immediate)
	time.Sleep(pause)
	c.Start(t)
}
