package testenv

import (
	"fmt"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
)

// ESOption changes how StartES configures its nodes.
type ESOption func(*ESCluster)

// WithSecurity starts the cluster with X-Pack security on: every request needs credentials,
// and the built-in elastic user's password is password (set as bootstrap.password in each
// node's keystore with bin/elasticsearch-keystore). HTTP stays plain, on loopback: TLS is
// the client's ca_cert business and would need certificates generated per test. Single-node
// clusters only (several nodes would need transport TLS).
func WithSecurity(password string) ESOption {
	return func(c *ESCluster) { c.Password = password }
}

func (c *ESCluster) securitySettings() []string {
	if c.Password == "" {
		return []string{"xpack.security.enabled: false"}
	}
	return []string{
		"xpack.security.enabled: true",
		"xpack.security.http.ssl.enabled: false",
		"xpack.security.transport.ssl.enabled: false",
		"xpack.security.enrollment.enabled: false",
	}
}

// adminURL is the node's URL with the elastic user's credentials when security is on (for the
// harness's own health checks; tests pass credentials through their configuration).
func (c *ESCluster) adminURL(n *ESNode) string {
	if c.Password == "" {
		return n.URL()
	}
	u, _ := url.Parse(n.URL())
	u.User = url.UserPassword("elastic", c.Password)
	return u.String()
}

// writeKeystore creates the node's keystore holding bootstrap.password, as the node's user.
func (c *ESCluster) writeKeystore(in esInstall, n *ESNode) error {
	if c.Password == "" {
		return nil
	}
	tool := filepath.Join(in.home, "bin", "elasticsearch-keystore")
	run := func(stdin string, args ...string) error {
		argv := append([]string{tool}, args...)
		var cmd *exec.Cmd
		if n.runAs != "" {
			cmd = exec.Command("runuser", append([]string{"-u", n.runAs, "--"}, argv...)...)
		} else {
			cmd = exec.Command(argv[0], argv[1:]...)
		}
		cmd.Env = n.env
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("elasticsearch-keystore %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := run("", "create"); err != nil {
		return err
	}
	return run(c.Password, "add", "-x", "bootstrap.password")
}
