// Package testenv connects integration tests to the real Elasticsearch and PostgreSQL that
// scripts/services.sh starts, gives each test its own index prefix and schema, and can start
// private Elasticsearch nodes and PostgreSQL clusters for tests that stop, kill or break them.
//
// Without the services, tests skip with a message on a developer's machine; under CI=true they
// fail, so a missing service can never turn a CI run green.
//
// testenv is test support: it may import pgx directly (production code reaches PostgreSQL only
// through pgstore).
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spillway/spillway/pkg/config"
)

// CI reports whether missing services must fail tests (CI=true).
func CI() bool { return os.Getenv("CI") == "true" }

// Unavailable fails the test under CI and skips it otherwise.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...) + " (start them with scripts/services.sh up)"
	if CI() {
		t.Fatalf("CI=true and a required service is missing: %s", msg)
	}
	t.Skipf("skipping integration test: %s", msg)
}

// Short reports whether only the short forms of slow suites should run (SPILLWAY_FULL unset).
func Short() bool { return os.Getenv("SPILLWAY_FULL") == "" }

// ESURL is the Elasticsearch the suite uses.
func ESURL() string {
	for _, k := range []string{"SPILLWAY_ES_URL", "ELASTICSEARCH_URL"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return "http://127.0.0.1:9200"
}

// PGURL is the PostgreSQL the suite uses.
func PGURL() string {
	for _, k := range []string{"SPILLWAY_PG_URL", "DATABASE_URL"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return "postgres://spillway:spillway@127.0.0.1:5432/spillway?sslmode=disable"
}

// Name returns a short random lower-case name with the prefix, unique per call.
func Name(prefix string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// ES returns the Elasticsearch configuration for one test: the shared node with an index
// prefix of its own ("t" + random, which overlaps no other test's template pattern). The
// test's indices and template are deleted when it ends.
func ES(t testing.TB) config.Elasticsearch {
	t.Helper()
	return ESAt(t, ESURL())
}

// ESAt is ES against a given URL (a private node, for instance).
func ESAt(t testing.TB, url string) config.Elasticsearch {
	t.Helper()
	if err := waitES(url, 2*time.Second); err != nil {
		Unavailable(t, "Elasticsearch at %s: %v", url, err)
	}
	cfg := DefaultES(url)
	cfg.IndexPrefix = Name("t")
	t.Cleanup(func() {
		for _, path := range []string{"/" + cfg.IndexPrefix + "-*," + cfg.IndexPrefix + ".retention?expand_wildcards=all&allow_no_indices=true&ignore_unavailable=true",
			"/_index_template/" + cfg.IndexPrefix + "-template", "/_index_template/" + cfg.IndexPrefix + ".retention-template"} {
			req, _ := http.NewRequest(http.MethodDelete, url+path, nil)
			if res, err := http.DefaultClient.Do(req); err == nil {
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
		}
	})
	return cfg
}

// DefaultES is the production default Elasticsearch configuration pointed at url.
func DefaultES(url string) config.Elasticsearch {
	return config.Elasticsearch{
		URLs:            []string{url},
		IndexPrefix:     "events",
		RefreshInterval: 500 * time.Millisecond,
		Shards:          1,
		Replicas:        "0-1",
		RequestTimeout:  30 * time.Second,
		MaxRetries:      3,
	}
}

func waitES(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		res, err := (&http.Client{Timeout: 2 * time.Second}).Get(url + "/_cluster/health")
		if err == nil {
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode == 200 && !strings.Contains(string(body), `"status":"red"`) {
				return nil
			}
			err = fmt.Errorf("cluster health %d: %s", res.StatusCode, body)
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// PG returns the PostgreSQL configuration for one test: the shared database with a fresh
// schema of its own, dropped when the test ends.
func PG(t testing.TB) config.Postgres {
	t.Helper()
	return PGAt(t, PGURL())
}

// PGAt is PG against a given URL (a private cluster, for instance).
func PGAt(t testing.TB, url string) config.Postgres {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		Unavailable(t, "PostgreSQL: %v", err)
	}
	defer conn.Close(ctx)
	schema := Name("t_")
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Logf("drop schema %s: %v", schema, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Logf("drop schema %s: %v", schema, err)
		}
	})
	return DefaultPG(url, schema)
}

// DefaultPG is the production default PostgreSQL configuration for url and schema.
func DefaultPG(url, schema string) config.Postgres {
	return config.Postgres{
		URL:              config.Secret(url),
		MaxConns:         4,
		Schema:           schema,
		StatementTimeout: time.Minute,
		ConnectTimeout:   5 * time.Second,
	}
}

// Context returns a context that ends with the test or after d.
func Context(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
