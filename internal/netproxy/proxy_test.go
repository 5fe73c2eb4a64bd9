package netproxy

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func echoServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func TestProxyDelaysRoundTripsAndKeepsBytes(t *testing.T) {
	const oneWay = 20 * time.Millisecond
	p, err := Start("127.0.0.1:0", echoServer(t), oneWay)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)

	// A round trip pays at least the delay twice. (A lower bound: a slow machine only adds.)
	start := time.Now()
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	line, err := r.ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Fatalf("echo %q %v", line, err)
	}
	if rtt := time.Since(start); rtt < 2*oneWay {
		t.Fatalf("round trip %v, want at least %v", rtt, 2*oneWay)
	}

	// A large transfer arrives intact and in order.
	payload := make([]byte, 3<<20)
	_, _ = rand.Read(payload)
	go func() { _, _ = c.Write(payload) }()
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(r, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("bytes changed in transit")
	}
}

func TestCloseCutsConnections(t *testing.T) {
	p, err := Start("127.0.0.1:0", echoServer(t), time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	p.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(buf); err == nil {
		t.Fatal("connection still open after Close")
	}
}

func TestHalfCloseStillGetsTheAnswer(t *testing.T) {
	p, err := Start("127.0.0.1:0", echoServer(t), 5*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("last words")); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "last words" {
		t.Fatalf("got %q %v", got, err)
	}
}

// A reply cut after the request: the server did the work (it counted the request), the client
// got no answer; requests CutReply lets through, on the same keep-alive connection or a new
// one, are answered as usual.
func TestCutReplyLosesTheReplyNotTheRequest(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		served.Add(1)
		fmt.Fprintf(w, "%s %s", r.URL.Path, b)
	}))
	defer srv.Close()
	var lines []string
	var mu sync.Mutex
	p, err := StartWith("127.0.0.1:0", srv.Listener.Addr().String(), Options{CutReply: func(line string) bool {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, line)
		return strings.HasPrefix(line, "POST /cut ")
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	post := func(path string) (string, error) {
		res, err := client.Post("http://"+p.Addr()+path, "text/plain", strings.NewReader(strings.Repeat("x", 100<<10)))
		if err != nil {
			return "", err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return string(b[:min(len(b), 6)]), err
	}
	for i, tc := range []struct {
		path string
		cut  bool
	}{{"/keep", false}, {"/keep", false}, {"/cut", true}, {"/keep", false}, {"/cut", true}, {"/cut", true}, {"/keep", false}} {
		got, err := post(tc.path)
		if tc.cut != (err != nil) || !tc.cut && got != tc.path+" " {
			t.Fatalf("request %d to %s: %q, %v", i, tc.path, got, err)
		}
		if served.Load() != int64(i+1) {
			t.Fatalf("request %d to %s: the server served %d requests", i, tc.path, served.Load())
		}
	}
	if p.Cuts() != 3 {
		t.Fatalf("%d replies cut, want 3", p.Cuts())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(lines) != 7 || lines[0] != "POST /keep HTTP/1.1" {
		t.Fatalf("request lines %q", lines)
	}
}
