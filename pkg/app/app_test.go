package app

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spillway/spillway/internal/testenv"
	"github.com/spillway/spillway/pkg/config"
	"github.com/spillway/spillway/pkg/httpx"
)

// With http.drain_delay, a stopping service keeps accepting for that long: /readyz fails and
// new requests get 503 with Retry-After (a load balancer notices, a client resends elsewhere)
// instead of refused connections; then the listener closes and Serve returns.
func TestServeDrainDelayAnswers503BeforeClosing(t *testing.T) {
	cfg := testenv.LoadConfig(t, config.RoleIngest).HTTP
	cfg.Addr, cfg.ShutdownGrace, cfg.DrainDelay = "127.0.0.1:0", 20*time.Second, 2*time.Second
	router := httpx.NewRouter()
	router.HandleFunc("/api/x", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) }).Methods(http.MethodPost)
	ready := make(chan net.Addr, 1)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, Service{Name: "t", Logger: slog.New(slog.DiscardHandler), HTTP: cfg, Router: router,
			Registry: prometheus.NewRegistry(), Health: httpx.NewHealth(time.Second), Ready: ready})
	}()
	base := "http://" + (<-ready).String()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	do := func(method, path string) (*http.Response, error) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader("{}"))
		res, err := client.Do(req)
		if err == nil {
			res.Body.Close()
		}
		return res, err
	}
	if res, err := do(http.MethodPost, "/api/x"); err != nil || res.StatusCode != http.StatusCreated {
		t.Fatalf("before the stop: %v %v", res, err)
	}
	stop()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		res, err := do(http.MethodGet, "/readyz")
		if err != nil {
			t.Fatalf("/readyz refused before it failed: %v", err)
		}
		if res.StatusCode == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("/readyz did not fail after the stop")
		}
	}
	res, err := do(http.MethodPost, "/api/x")
	if err != nil || res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
		t.Fatalf("a new request while draining: %v %v, want 503 with Retry-After", res, err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Serve did not return")
	}
	if _, err := do(http.MethodGet, "/readyz"); err == nil {
		t.Fatal("still accepting after Serve returned")
	}
}
