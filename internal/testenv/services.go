package testenv

import (
	"fmt"
	"path"
	"testing"
	"time"

	"github.com/spillway/spillway/pkg/config"
)

// Service is a Spillway binary running as a subprocess, with its base URL.
type Service struct {
	*Process
	URL string
}

// StartService runs the command pkg (e.g. "cmd/ingest", "cmd/search") on a free loopback port
// against es, with extra SPILLWAY_ settings, and waits until it is ready.
func StartService(t testing.TB, pkg string, es config.Elasticsearch, extra ...string) *Service {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	env := append(ESEnv(es), "SPILLWAY_HTTP_ADDR="+addr)
	p := StartProcess(t, path.Base(pkg), Build(t, pkg), Env(append(env, extra...)...))
	s := &Service{Process: p, URL: "http://" + addr}
	p.WaitHTTP(t, s.URL+"/readyz", 2*time.Minute)
	return s
}
