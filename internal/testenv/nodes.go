package testenv

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ESCluster is a private Elasticsearch cluster on loopback for tests that stop, kill or break
// nodes. Start it with StartES; it is torn down when the test ends.
type ESCluster struct {
	t     testing.TB
	Nodes []*ESNode
	// Password is the elastic user's password when the cluster was started WithSecurity.
	Password string
	roles    []byte     // WithFileRealm: roles.yml
	users    []FileUser // WithFileRealm
}

// ESNode is one node of an ESCluster.
type ESNode struct {
	Name          string
	HTTPPort      int
	TransportPort int
	dir           string
	env           []string
	runAs         string
	mu            sync.Mutex
}

// URL is the node's HTTP address.
func (n *ESNode) URL() string { return fmt.Sprintf("http://127.0.0.1:%d", n.HTTPPort) }

// URLs lists every node's HTTP address.
func (c *ESCluster) URLs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.URL()
	}
	return out
}

// esInstall describes the Elasticsearch installation services.sh prepared.
type esInstall struct {
	home, java, user string
}

func findESInstall() (esInstall, error) {
	in := esInstall{home: os.Getenv("SPILLWAY_ES_HOME"), java: os.Getenv("SPILLWAY_ES_JAVA_HOME"), user: os.Getenv("SPILLWAY_ES_USER")}
	if in.home == "" {
		matches, _ := filepath.Glob("/var/tmp/spillway/elasticsearch-*")
		if len(matches) > 0 {
			in.home = matches[len(matches)-1]
		}
	}
	if in.java == "" {
		in.java = "/usr/lib/jvm/java-17-openjdk-amd64"
	}
	if in.user == "" {
		in.user = "spillway-es"
	}
	if _, err := os.Stat(filepath.Join(in.home, "bin", "elasticsearch")); err != nil {
		return in, fmt.Errorf("no Elasticsearch installation (SPILLWAY_ES_HOME=%q): run scripts/services.sh up", in.home)
	}
	if os.Geteuid() != 0 {
		in.user = ""
	}
	return in, nil
}

// FreePort returns a TCP port on loopback that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// scratchDir makes a directory the Elasticsearch or PostgreSQL user can use, removed at cleanup.
func scratchDir(t testing.TB, owner string) string {
	t.Helper()
	base := "/var/tmp/spillway/tmp"
	if os.Geteuid() != 0 {
		base = filepath.Join(os.TempDir(), "spillway-tests")
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(filepath.Dir(base), 0o755)
	_ = os.Chmod(base, 0o755)
	dir, err := os.MkdirTemp(base, "t")
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(dir, 0o755)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func chownR(t testing.TB, dir, owner string) {
	t.Helper()
	if owner == "" {
		return
	}
	u, err := user.Lookup(owner)
	if err != nil {
		t.Fatalf("user %s: %v", owner, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	_ = filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			_ = os.Lchown(p, uid, gid)
		}
		return nil
	})
}

// StartES starts a private cluster of n nodes (n ≥ 1) with heap each, on free loopback ports,
// and waits until it is at least yellow. Nodes are killed when the test ends.
func StartES(t testing.TB, n int, heap string, opts ...ESOption) *ESCluster {
	t.Helper()
	in, err := findESInstall()
	if err != nil {
		Unavailable(t, "%v", err)
	}
	if heap == "" {
		heap = "512m"
	}
	// A cluster that fails to form is started once more from scratch, on new ports and in new
	// directories: CI once saw a node of a three-node cluster leave during start-up while other
	// packages' tests started JVMs beside it. The first failure is logged with every node's log
	// tail, so a cause on our side stays visible; a second failure fails the test.
	c, err := startESOnce(t, in, n, heap, opts)
	if err != nil {
		t.Logf("private Elasticsearch cluster did not start; starting it again from scratch: %v", err)
		c, err = startESOnce(t, in, n, heap, opts)
	}
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func startESOnce(t testing.TB, in esInstall, n int, heap string, opts []ESOption) (*ESCluster, error) {
	c := &ESCluster{t: t}
	for _, o := range opts {
		o(c)
	}
	root := scratchDir(t, in.user)
	var seeds, masters []string
	for i := 0; i < n; i++ {
		node := &ESNode{Name: fmt.Sprintf("node-%d", i+1), HTTPPort: FreePort(t), TransportPort: FreePort(t), runAs: in.user}
		node.dir = filepath.Join(root, node.Name)
		seeds = append(seeds, fmt.Sprintf("127.0.0.1:%d", node.TransportPort))
		masters = append(masters, node.Name)
		c.Nodes = append(c.Nodes, node)
	}
	for _, node := range c.Nodes {
		conf := filepath.Join(node.dir, "config")
		if err := os.MkdirAll(conf, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"jvm.options", "log4j2.properties"} {
			b, err := os.ReadFile(filepath.Join(in.home, "config", f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(conf, f), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		yml := []string{
			"cluster.name: spillway-test",
			"node.name: " + node.Name,
			"network.host: 127.0.0.1",
			fmt.Sprintf("http.port: %d", node.HTTPPort),
			fmt.Sprintf("transport.port: %d", node.TransportPort),
			"path.data: " + filepath.Join(node.dir, "data"),
			"path.logs: " + filepath.Join(node.dir, "logs"),
			"cluster.routing.allocation.disk.threshold_enabled: false",
			"action.destructive_requires_name: false",
		}
		yml = append(yml, c.securitySettings()...)
		if n == 1 {
			yml = append(yml, "discovery.type: single-node")
		} else {
			yml = append(yml, "discovery.seed_hosts: ["+strings.Join(seeds, ", ")+"]",
				"cluster.initial_master_nodes: ["+strings.Join(masters, ", ")+"]")
		}
		if err := os.WriteFile(filepath.Join(conf, "elasticsearch.yml"), []byte(strings.Join(yml, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := c.writeFileRealm(conf); err != nil {
			t.Fatal(err)
		}
		node.env = append(os.Environ(), "ES_JAVA_HOME="+in.java, "ES_PATH_CONF="+conf,
			"ES_JAVA_OPTS=-Xms"+heap+" -Xmx"+heap, "ES_HOME="+in.home)
		chownR(t, node.dir, in.user)
		if err := c.writeKeystore(in, node); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, node := range c.Nodes {
			node.Kill(t)
		}
	})
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, node := range c.Nodes {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = node.start(in.home) }()
	}
	wg.Wait()
	fail := func(err error) (*ESCluster, error) {
		tails := c.logTails()
		for _, node := range c.Nodes {
			node.Kill(t)
		}
		return nil, fmt.Errorf("%w\n%s", err, tails)
	}
	for _, err := range errs {
		if err != nil {
			return fail(fmt.Errorf("start Elasticsearch node: %w", err))
		}
	}
	if err := waitES(c.adminURL(c.Nodes[0]), 3*time.Minute); err != nil {
		return fail(fmt.Errorf("private cluster not healthy: %w", err))
	}
	if n > 1 {
		if err := waitNodes(c.adminURL(c.Nodes[0]), n, 2*time.Minute); err != nil {
			return fail(err)
		}
	}
	return c, nil
}

// logTails is the end of every node's log, for a cluster that did not come up (the logs are
// deleted with the scratch directory when the test ends).
func (c *ESCluster) logTails() string {
	var b strings.Builder
	for _, n := range c.Nodes {
		log, err := os.ReadFile(filepath.Join(n.dir, "logs", "spillway-test.log"))
		if err != nil {
			fmt.Fprintf(&b, "%s: no log: %v\n", n.Name, err)
			continue
		}
		if len(log) > 4096 {
			log = log[len(log)-4096:]
		}
		fmt.Fprintf(&b, "--- %s log (end):\n%s\n", n.Name, log)
	}
	return b.String()
}

func (n *ESNode) pidFile() string { return filepath.Join(n.dir, "es.pid") }

func (n *ESNode) start(home string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	_ = os.Remove(n.pidFile())
	args := []string{filepath.Join(home, "bin", "elasticsearch"), "-d", "-p", n.pidFile()}
	var cmd *exec.Cmd
	if n.runAs != "" {
		cmd = exec.Command("runuser", append([]string{"-u", n.runAs, "--"}, args...)...)
	} else {
		cmd = exec.Command(args[0], args[1:]...)
	}
	cmd.Env = n.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", n.Name, err, out)
	}
	return waitHTTP(n.URL(), 3*time.Minute)
}

func (n *ESNode) pid() int {
	b, err := os.ReadFile(n.pidFile())
	if err != nil {
		return 0
	}
	p, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return p
}

// Start starts a stopped node again (same data) and waits until it answers HTTP.
func (n *ESNode) Start(t testing.TB) {
	t.Helper()
	in, err := findESInstall()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.start(in.home); err != nil {
		t.Fatal(err)
	}
}

// Stop stops the node gracefully (SIGTERM) and waits for it to exit.
func (n *ESNode) Stop(t testing.TB) { n.signal(t, syscall.SIGTERM) }

// Kill stops the node with SIGKILL: a crash.
func (n *ESNode) Kill(t testing.TB) { n.signal(t, syscall.SIGKILL) }

func (n *ESNode) signal(t testing.TB, sig syscall.Signal) {
	n.mu.Lock()
	defer n.mu.Unlock()
	pid := n.pid()
	if pid == 0 {
		return
	}
	_ = syscall.Kill(pid, sig)
	deadline := time.Now().Add(90 * time.Second)
	for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if syscall.Kill(pid, 0) == nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		time.Sleep(time.Second)
	}
	_ = os.Remove(n.pidFile())
}

// Running reports whether the node's process is alive.
func (n *ESNode) Running() bool {
	p := n.pid()
	return p != 0 && syscall.Kill(p, 0) == nil
}

func waitHTTP(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "http://"), time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not open: %v", url, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitNodes waits until the cluster at url has n nodes. (Elasticsearch refuses unknown query
// parameters, so the health URL is built here rather than by appending to waitES's.)
func waitNodes(url string, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: 15 * time.Second}
	var last string
	for {
		res, err := client.Get(fmt.Sprintf("%s/_cluster/health?wait_for_nodes=%d&timeout=5s", url, n))
		if err == nil {
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", res.StatusCode, body)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster did not reach %d nodes within %s (last: %s)", n, timeout, last)
		}
		time.Sleep(time.Second)
	}
}
