package config

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDefaultsAreValid(t *testing.T) {
	for _, role := range []Role{RoleIngest, RoleSearch, RoleArchiver} {
		cfg, _, err := Load(role, nil, nil, env(nil))
		if err != nil {
			t.Fatalf("%s: %v", role, err)
		}
		want := map[Role]string{RoleIngest: ":8080", RoleSearch: ":8081", RoleArchiver: ":8082"}[role]
		if cfg.HTTP.Addr != want {
			t.Errorf("%s: addr %q, want %q", role, cfg.HTTP.Addr, want)
		}
	}
}

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(file, []byte("ingest:\n  max_events: 50\n  ack_timeout: 3s\nlog:\n  level: debug\npostgres:\n  max_conns: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(*testing.T, *Config)
	}{
		{"default", nil, nil, func(t *testing.T, c *Config) {
			if c.Ingest.MaxEvents != 10000 || c.Ingest.MaxBodyBytes != 10<<20 {
				t.Errorf("defaults: %d %d", c.Ingest.MaxEvents, c.Ingest.MaxBodyBytes)
			}
		}},
		{"file over default", []string{"--config", file}, nil, func(t *testing.T, c *Config) {
			if c.Ingest.MaxEvents != 50 || c.Ingest.AckTimeout != 3*time.Second || c.Log.Level != "debug" {
				t.Errorf("file: %+v", c.Ingest)
			}
		}},
		{"env over file", []string{"--config", file}, map[string]string{"SPILLWAY_INGEST_MAX_EVENTS": "60"}, func(t *testing.T, c *Config) {
			if c.Ingest.MaxEvents != 60 || c.Postgres.MaxConns != 3 {
				t.Errorf("env: %d %d", c.Ingest.MaxEvents, c.Postgres.MaxConns)
			}
		}},
		{"flag over env", []string{"--config", file, "--ingest.max_events", "70"}, map[string]string{"SPILLWAY_INGEST_MAX_EVENTS": "60"}, func(t *testing.T, c *Config) {
			if c.Ingest.MaxEvents != 70 {
				t.Errorf("flag: %d", c.Ingest.MaxEvents)
			}
		}},
		{"config file from env", nil, map[string]string{"SPILLWAY_CONFIG": file}, func(t *testing.T, c *Config) {
			if c.Ingest.MaxEvents != 50 {
				t.Errorf("SPILLWAY_CONFIG ignored: %d", c.Ingest.MaxEvents)
			}
		}},
		{"heroku fallbacks", nil, map[string]string{"PORT": "5000", "DATABASE_URL": "postgres://u:p@db.example:5432/d", "ELASTICSEARCH_URL": "https://es.example:9243"}, func(t *testing.T, c *Config) {
			if c.HTTP.Addr != ":5000" || c.Postgres.URL.Value() != "postgres://u:p@db.example:5432/d" || c.Elasticsearch.URLs[0] != "https://es.example:9243" {
				t.Errorf("heroku: %q %q %v", c.HTTP.Addr, c.Postgres.URL.Value(), c.Elasticsearch.URLs)
			}
		}},
		{"spillway names beat conventional ones", nil, map[string]string{"PORT": "5000", "SPILLWAY_HTTP_ADDR": "127.0.0.1:9", "DATABASE_URL": "postgres://a/b", "SPILLWAY_PG_URL": "postgres://c/d"}, func(t *testing.T, c *Config) {
			if c.HTTP.Addr != "127.0.0.1:9" || c.Postgres.URL.Value() != "postgres://c/d" {
				t.Errorf("got %q %q", c.HTTP.Addr, c.Postgres.URL.Value())
			}
		}},
		{"list and sizes", []string{"--elasticsearch.urls", "http://a:9200, http://b:9200", "--ingest.max_body_bytes", "2MiB"}, nil, func(t *testing.T, c *Config) {
			if len(c.Elasticsearch.URLs) != 2 || c.Elasticsearch.URLs[1] != "http://b:9200" || c.Ingest.MaxBodyBytes != 2<<20 {
				t.Errorf("got %v %d", c.Elasticsearch.URLs, c.Ingest.MaxBodyBytes)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, err := Load(RoleIngest, nil, tc.args, env(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, cfg)
		})
	}
}

func TestInvalidValuesNameTheKey(t *testing.T) {
	dir := t.TempDir()
	typo := filepath.Join(dir, "typo.yaml")
	if err := os.WriteFile(typo, []byte("ingest:\n  max_event: 5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		key  string
	}{
		{"negative max events", []string{"--ingest.max_events", "0"}, nil, "ingest.max_events"},
		{"bad duration", nil, map[string]string{"SPILLWAY_INGEST_ACK_TIMEOUT": "soon"}, "ackt"},
		{"bad size", []string{"--ingest.max_body_bytes", "ten"}, nil, "maxbodybytes"},
		{"bad es url", []string{"--elasticsearch.urls", "ftp://x"}, nil, "elasticsearch.urls"},
		{"pool too big", []string{"--postgres.max_conns", "500"}, nil, "postgres.max_conns"},
		{"bad prefix", []string{"--elasticsearch.index_prefix", "Events*"}, nil, "elasticsearch.index_prefix"},
		{"bad log level", []string{"--log.level", "loud"}, nil, "log.level"},
		{"short cursor key", nil, map[string]string{"SPILLWAY_SEARCH_CURSOR_KEY": "short"}, "search.cursor_key"},
		{"retention inside max past age", []string{"--archiver.retention_after", "744h", "--search.cold_tier", "true"}, nil, "archiver.retention_after"},
		{"retention without cold tier", []string{"--archiver.retention_after", "1000h"}, nil, "archiver.retention_after"},
		{"zero boundary refresh", []string{"--search.cold_boundary_refresh", "0s"}, nil, "search.cold_boundary_refresh"},
		{"negative linger", []string{"--ingest.bulk_flush_interval", "-1ms"}, nil, "ingest.bulk_flush_interval"},
		{"queue target beyond the ack timeout", []string{"--ingest.queue_delay_target", "10s"}, nil, "ingest.queue_delay_target"},
		{"zero queue interval", []string{"--ingest.queue_delay_interval", "0s"}, nil, "ingest.queue_delay_interval"},
		{"unknown file key", []string{"--config", typo}, nil, "ingest.max_event"},
		{"missing file", []string{"--config", filepath.Join(dir, "nope.yaml")}, nil, "config"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Load(RoleIngest, nil, tc.args, env(tc.env))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("want *config.Error, got %v", err)
			}
			if !strings.Contains(strings.ToLower(strings.ReplaceAll(err.Error(), "_", "")), strings.ReplaceAll(tc.key, "_", "")) {
				t.Fatalf("error %q does not name %q", err, tc.key)
			}
		})
	}
}

func TestRetentionAllowed(t *testing.T) {
	cfg, _, err := Load(RoleArchiver, nil, []string{"--ingest.max_past_age", "48h", "--search.cold_tier", "true",
		"--archiver.retention_after", "73h"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		olderThan time.Duration
		coldTier  bool
		ok        bool
	}{
		{72 * time.Hour, true, false}, // max_past_age + 24h exactly: a late event could still land a day below
		{72*time.Hour + time.Nanosecond, true, true},
		{30 * 24 * time.Hour, true, true},
		{30 * 24 * time.Hour, false, false},
	} {
		c := *cfg
		c.Search.ColdTier = tc.coldTier
		if err := RetentionAllowed(tc.olderThan, &c); (err == nil) != tc.ok {
			t.Errorf("%s, cold tier %v: err %v, want ok=%v", tc.olderThan, tc.coldTier, err, tc.ok)
		}
	}
}

func TestUnknownFlagFails(t *testing.T) {
	if _, _, err := Load(RoleIngest, nil, []string{"--ingest.nope", "1"}, env(nil)); err == nil {
		t.Fatal("unknown flag accepted")
	}
}

func TestSecretsAreRedacted(t *testing.T) {
	cfg, _, err := Load(RoleArchiver, nil, nil, env(map[string]string{
		"DATABASE_URL":                    "postgres://user:hunter2@db:5432/x?sslmode=require",
		"SPILLWAY_ELASTICSEARCH_URLS":     "https://elastic:s3cr3t@es:9243",
		"SPILLWAY_ELASTICSEARCH_PASSWORD": "pw-xyz",
		"SPILLWAY_ELASTICSEARCH_API_KEY":  "key-xyz",
		"SPILLWAY_SEARCH_CURSOR_KEY":      "cursor-xyz-0123456789",
		"SPILLWAY_AUTH_KEYS":              "ops:admin:spw_pasted-instead-of-its-hash",
	}))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "config", cfg)
	out := buf.String()
	for _, secret := range []string{"hunter2", "s3cr3t", "pw-xyz", "key-xyz", "cursor-xyz", "spw_pasted"} {
		if strings.Contains(out, secret) {
			t.Errorf("secret %q in log output: %s", secret, out)
		}
	}
	if !strings.Contains(out, "db:5432") || !strings.Contains(out, "es:9243") {
		t.Errorf("redaction removed too much: %s", out)
	}
	if cfg.Elasticsearch.URLs[0] != "https://elastic:s3cr3t@es:9243" {
		t.Error("Redacted modified the original")
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{"512": 512, "64KiB": 64 << 10, "10MiB": 10 << 20, "1GiB": 1 << 30, "5MB": 5000000, "7B": 7} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5MiB", "ten", "99999999999GiB"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) accepted", in)
		}
	}
	if s := ByteSize(10 << 20).String(); s != "10MiB" {
		t.Errorf("String = %s", s)
	}
}
