package httpx

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"
)

// At the connection cap, a further connection waits for a slot; shutting down must still end
// within the grace: the listener's Accept gives up when the listener closes, and the idle
// connections holding the slots are closed by Shutdown.
func TestShutdownAtTheConnectionCap(t *testing.T) {
	ln, err := Listen("127.0.0.1:0", 2)
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	srv := NewServer(h, Limits{ReadHeaderTimeout: time.Second, IdleTimeout: time.Minute}, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, srv, ln, 500*time.Millisecond) }()

	// Two keep-alive connections take both slots and stay idle; a third waits in the backlog.
	var conns []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 512)
		if _, err := c.Read(buf); err != nil { // the answer: the connection is accepted and idle
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	waiting, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer waiting.Close()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(30 * time.Second): // a hang guard, far beyond the 500 ms grace
		t.Fatal("shutdown at the connection cap did not return: Accept is stuck on the cap")
	}
}
