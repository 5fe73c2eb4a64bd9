package testenv

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
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

// FileUser is a user of the file realm: a name, its password and the roles it holds.
type FileUser struct {
	Name, Password string
	Roles          []string
}

// WithFileRealm gives a secured cluster (WithSecurity) the roles of roles.yml and the users:
// the file realm's config/roles.yml, config/users and config/users_roles, written before the
// nodes start — what `bin/elasticsearch-users useradd NAME -r ROLE` writes, without a JVM per
// user. Passwords are stored as PBKDF2-HMAC-SHA512 hashes, a format the file realm reads.
func WithFileRealm(roles []byte, users ...FileUser) ESOption {
	return func(c *ESCluster) { c.roles, c.users = roles, users }
}

// writeFileRealm writes roles.yml, users and users_roles into a node's config directory.
func (c *ESCluster) writeFileRealm(conf string) error {
	if c.roles == nil && len(c.users) == 0 {
		return nil
	}
	var users strings.Builder
	byRole := map[string][]string{}
	for _, u := range c.users {
		hash, err := pbkdf2Hash(u.Password)
		if err != nil {
			return err
		}
		fmt.Fprintf(&users, "%s:%s\n", u.Name, hash)
		for _, r := range u.Roles {
			byRole[r] = append(byRole[r], u.Name)
		}
	}
	var userRoles strings.Builder
	names := make([]string, 0, len(byRole))
	for r := range byRole {
		names = append(names, r)
	}
	sort.Strings(names)
	for _, r := range names {
		fmt.Fprintf(&userRoles, "%s:%s\n", r, strings.Join(byRole[r], ","))
	}
	for name, body := range map[string][]byte{"roles.yml": c.roles, "users": []byte(users.String()), "users_roles": []byte(userRoles.String())} {
		if err := os.WriteFile(filepath.Join(conf, name), body, 0o640); err != nil {
			return err
		}
	}
	return nil
}

// pbkdf2Hash is Elasticsearch's "{PBKDF2}<iterations>$<salt>$<key>" form of a password
// (PBKDF2 with HMAC-SHA512, a 32-byte salt and a 256-bit key, base64).
func pbkdf2Hash(password string) (string, error) {
	const iterations = 10000
	salt := make([]byte, 32)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key, err := pbkdf2.Key(sha512.New, password, salt, iterations, 32)
	if err != nil {
		return "", err
	}
	enc := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("{PBKDF2}%d$%s$%s", iterations, enc(salt), enc(key)), nil
}

// DeprecationLog is what the cluster's nodes wrote to their deprecation logs so far (JSON lines):
// a test can check that what it did uses nothing the next major version removes.
func (c *ESCluster) DeprecationLog() string {
	var b strings.Builder
	for _, n := range c.Nodes {
		log, err := os.ReadFile(filepath.Join(n.dir, "logs", "spillway-test_deprecation.json"))
		if err == nil {
			b.Write(log)
		}
	}
	return b.String()
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
