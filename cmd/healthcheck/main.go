// Command healthcheck GETs one URL and exits 0 when it answers 2xx, 1 otherwise (2 for bad
// usage). The service image is distroless — no shell, no curl — so docker-compose's health
// checks run this instead: `healthcheck http://127.0.0.1:8080/readyz`.
package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/spillway/spillway/pkg/version"
)

// timeout bounds the whole check; Docker kills a check that outlives its own timeout anyway,
// but a clear message is more useful than a killed process.
const timeout = 5 * time.Second

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

func run(args []string, stderr io.Writer) int {
	if len(args) == 1 && args[0] == "--version" {
		fmt.Println("spillway healthcheck", version.String())
		return 0
	}
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: healthcheck URL")
		return 2
	}
	u, err := url.Parse(args[0])
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fmt.Fprintf(stderr, "healthcheck: not an http(s) URL: %q\n", args[0])
		return 2
	}
	// No proxy: the check targets the container itself, whatever HTTP_PROXY says.
	client := &http.Client{Timeout: timeout, Transport: &http.Transport{Proxy: nil}}
	resp, err := client.Get(u.String())
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		fmt.Fprintf(stderr, "healthcheck: %s answered %s\n", u.Redacted(), resp.Status)
		return 1
	}
	return 0
}
