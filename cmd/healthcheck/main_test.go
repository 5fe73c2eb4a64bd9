package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			w.WriteHeader(http.StatusOK)
		case "/draining":
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close() // a port nothing listens on any more

	tests := []struct {
		name    string
		args    []string
		want    int
		wantErr string
	}{
		{"ready", []string{srv.URL + "/readyz"}, 0, ""},
		{"503", []string{srv.URL + "/draining"}, 1, "503"},
		{"404", []string{srv.URL + "/nope"}, 1, "404"},
		{"refused", []string{closed.URL + "/readyz"}, 1, "healthcheck:"},
		{"no args", nil, 2, "usage"},
		{"two args", []string{srv.URL, srv.URL}, 2, "usage"},
		{"not http", []string{"ftp://x/readyz"}, 2, "not an http(s) URL"},
		{"no host", []string{"http:///readyz"}, 2, "not an http(s) URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if got := run(tc.args, &stderr); got != tc.want {
				t.Fatalf("run(%q) = %d, want %d (stderr %q)", tc.args, got, tc.want, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.wantErr) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tc.wantErr)
			}
		})
	}
}
