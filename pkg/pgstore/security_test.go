package pgstore_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/pgstore"
)

// TestPasswordNeverInErrorsOrLogs: a wrong password fails the connection with an error that
// does not carry the password, and the configuration's log line masks it.
func TestPasswordNeverInErrorsOrLogs(t *testing.T) {
	const secret = "wrong-Secret-4711"
	cfg := testenv.PG(t)
	u, err := url.Parse(cfg.URL.Value())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), secret)
	cfg.URL = config.Secret(u.String())

	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	logger.Info("starting", "config", config.Config{Postgres: cfg})
	ctx := testenv.Context(t, 30*time.Second)
	s, err := pgstore.Open(ctx, cfg, pgstore.Options{}, logger)
	if err == nil {
		err = s.Ping(ctx)
		s.Close()
	}
	if err == nil {
		t.Fatal("connected with a wrong password")
	}
	if !strings.Contains(err.Error(), "password authentication failed") {
		t.Fatalf("failed for another reason than the password: %v", err)
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("the error carries the password: %v", err)
	}
	if strings.Contains(logs.String(), secret) || !strings.Contains(logs.String(), "REDACTED") {
		t.Fatalf("log: %s", logs.String())
	}
}

// TestSSLMode: postgres.url's sslmode is honoured. Against a private cluster serving TLS with a
// certificate from a test CA, verify-full with that CA encrypts the connection, disable does
// not, and verify-full without the CA refuses the server; against a server without TLS,
// require refuses instead of falling back to plain text.
func TestSSLMode(t *testing.T) {
	pg := testenv.StartPG(t)
	ctx := testenv.Context(t, time.Minute)
	base := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres", pg.Port)
	// Before TLS is on: require must refuse rather than fall back to plain text.
	if _, err := sessionSSL(ctx, base+"?sslmode=require"); err == nil {
		t.Fatal("sslmode=require connected to a server without TLS")
	}
	caFile := serveTLS(t, pg)
	for _, tc := range []struct {
		name, query string
		ssl         bool // want an encrypted session
		fail        string
	}{
		{"verify-full with the CA", "sslmode=verify-full&sslrootcert=" + url.QueryEscape(caFile), true, ""},
		{"require", "sslmode=require", true, ""},
		{"disable", "sslmode=disable", false, ""},
		{"verify-full without the CA", "sslmode=verify-full", false, "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ssl, err := sessionSSL(ctx, base+"?"+tc.query)
			if tc.fail != "" {
				if err == nil || !strings.Contains(err.Error(), tc.fail) {
					t.Fatalf("err %v, want one about the %s", err, tc.fail)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ssl != tc.ssl {
				t.Fatalf("session ssl=%v, want %v", ssl, tc.ssl)
			}
		})
	}
}

func withStore(ctx context.Context, cfg config.Postgres, f func(*pgstore.Store) error) error {
	s, err := pgstore.Open(ctx, cfg, pgstore.Options{MaxConns: 1}, nil)
	if err != nil {
		return err
	}
	defer s.Close()
	return f(s)
}

// sessionSSL connects with url and reports whether the session is encrypted (pg_stat_ssl).
func sessionSSL(ctx context.Context, url string) (bool, error) {
	cfg := testenv.DefaultPG(url, "public")
	var ssl bool
	err := withStore(ctx, cfg, func(s *pgstore.Store) error {
		return s.Pool().QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl)
	})
	return ssl, err
}

// serveTLS gives the private cluster a server certificate for 127.0.0.1 signed by a fresh CA,
// turns ssl on (a reload suffices) and returns the CA's PEM file.
func serveTLS(t *testing.T, pg *testenv.PGCluster) string {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "spillway test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srv := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(srvKey)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := write("ca.pem", "CERTIFICATE", caDER)
	certFile := write("server.crt", "CERTIFICATE", srvDER)
	keyFile := write("server.key", "EC PRIVATE KEY", keyDER)
	// The server reads them as its own user and insists the key is private to it.
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal(err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		for _, p := range []string{dir, certFile, keyFile} {
			if err := os.Chown(p, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
		_ = os.Chmod(dir, 0o755)
		_ = os.Chmod(filepath.Dir(dir), 0o755)
	}
	ctx := testenv.Context(t, 30*time.Second)
	err = withStore(ctx, testenv.DefaultPG(pg.URL(), "public"), func(s *pgstore.Store) error {
		for _, q := range []string{
			"ALTER SYSTEM SET ssl_cert_file = '" + certFile + "'",
			"ALTER SYSTEM SET ssl_key_file = '" + keyFile + "'",
			"ALTER SYSTEM SET ssl = on",
			"SELECT pg_reload_conf()",
		} {
			if _, err := s.Pool().Exec(ctx, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return caFile
}
