package esstore_test

import (
	"bytes"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/esstore"
	"github.com/spillway/spillway/pkg/event"
)

// TestCredentialsAgainstSecuredCluster starts a private node with security on (HTTP without
// TLS, on loopback) and proves basic authentication — username/password, or credentials in the
// URL — works for the reads and for the bulk writer, that missing or wrong credentials fail with
// 401, and that the password reaches no error and no log line.
//
// API keys cannot be proven here: creating one writes the .security index, whose mapping needs
// the analysis-common module that the integ-test distribution lacks ("Unknown filter type
// [pattern_capture]"). TestAPIKeyIsSent checks what the client sends instead.
func TestCredentialsAgainstSecuredCluster(t *testing.T) {
	const password = "s3cret-Bootstrap-pw"
	cluster := testenv.StartES(t, 1, "512m", testenv.WithSecurity(password))
	node := cluster.Nodes[0].URL()
	ctx := testenv.Context(t, 3*time.Minute)

	withURL, _ := url.Parse(node)
	withURL.User = url.UserPassword("elastic", password)
	secrets := []string{password}

	for _, tc := range []struct {
		name string
		cfg  func(c *config.Elasticsearch)
		ok   bool
	}{
		{"username and password", func(c *config.Elasticsearch) { c.Username, c.Password = "elastic", password }, true},
		{"credentials in the URL", func(c *config.Elasticsearch) { c.URLs = []string{withURL.String()} }, true},
		{"no credentials", func(c *config.Elasticsearch) {}, false},
		{"wrong password", func(c *config.Elasticsearch) { c.Username, c.Password = "elastic", "not-"+password }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testenv.DefaultES(node)
			cfg.IndexPrefix = testenv.Name("t")
			tc.cfg(&cfg)
			var logs bytes.Buffer
			logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			logger.Info("config", "elasticsearch", config.Config{Elasticsearch: cfg})
			s, err := esstore.New(cfg, logger)
			if err != nil {
				t.Fatal(err)
			}
			err = s.Ping(ctx)
			if !tc.ok {
				var se *esstore.StatusError
				if !errors.As(err, &se) || se.Status != http.StatusUnauthorized {
					t.Fatalf("ping without valid credentials: %v, want a 401", err)
				}
				for _, sec := range secrets {
					if strings.Contains(err.Error(), sec) {
						t.Fatal("the error holds a secret")
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("ping: %v", err)
			}
			if err := s.InstallTemplate(ctx); err != nil {
				t.Fatal(err)
			}
			w, err := s.NewBulkWriter(esstore.BulkConfig{MaxConcurrent: 1, FlushBytes: 1 << 20, Timeout: 30 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			out, err := w.Write(ctx, []event.Event{{ID: "e1", ClientID: "c", Timestamp: now, IngestedAt: now}}, true)
			if err != nil || len(out) != 1 || out[0].Result != event.Created {
				t.Fatalf("bulk write: %+v %v", out, err)
			}
			if err := w.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if e, err := s.Get(ctx, "e1", time.Time{}); err != nil || e.ClientID != "c" {
				t.Fatalf("get: %+v %v", e, err)
			}
			for _, sec := range secrets {
				if strings.Contains(logs.String(), sec) {
					t.Fatalf("a secret is in the log: %s", logs.String())
				}
			}
			if !strings.Contains(logs.String(), "elasticsearch") {
				t.Fatalf("nothing logged: the redaction check would be empty")
			}
		})
	}
}

// TestAPIKeyIsSent: with elasticsearch.api_key the client authenticates every request with
// "Authorization: ApiKey <key>" (the scheme Elasticsearch expects for an encoded key), and the key
// is not in the configuration's log line.
func TestAPIKeyIsSent(t *testing.T) {
	const apiKey = "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="
	seen := make(chan string, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case seen <- r.Header.Get("Authorization"):
		default:
		}
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"green"}`))
	}))
	defer srv.Close()
	cfg := testenv.DefaultES(srv.URL)
	cfg.APIKey = config.Secret(apiKey)
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("starting", "config", config.Config{Elasticsearch: cfg})
	if strings.Contains(logs.String(), apiKey) || !strings.Contains(logs.String(), "[REDACTED]") {
		t.Fatalf("config log: %s", logs.String())
	}
	s, err := esstore.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(testenv.Context(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	// Elasticsearch reads the scheme case-insensitively; the client writes "APIKey".
	scheme, cred, _ := strings.Cut(<-seen, " ")
	if !strings.EqualFold(scheme, "ApiKey") || cred != apiKey {
		t.Fatalf("Authorization %q %q", scheme, cred)
	}
}

// TestCACert: an https cluster whose certificate is signed by elasticsearch.ca_cert is trusted;
// without the CA the client refuses it (no silent downgrade to trusting anything). The server
// is a TLS test server speaking just enough of Elasticsearch's protocol for a health check:
// the claim is about the client's trust, not about Elasticsearch.
func TestCACert(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"green"}`))
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := testenv.Context(t, 30*time.Second)
	cfg := testenv.DefaultES(srv.URL)
	cfg.MaxRetries = 0
	s, err := esstore.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("untrusted certificate: %v, want a certificate error", err)
	}
	cfg.CACert = caFile
	if s, err = esstore.New(cfg, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("with elasticsearch.ca_cert: %v", err)
	}
	cfg.CACert = filepath.Join(t.TempDir(), "missing.pem")
	if _, err := esstore.New(cfg, nil); err == nil || !strings.Contains(err.Error(), "elasticsearch.ca_cert") {
		t.Fatalf("missing CA file: %v", err)
	}
}
