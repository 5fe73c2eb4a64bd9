// Package netproxy is a TCP proxy for reproducing the network on one machine. It adds a fixed
// one-way delay to every byte in both directions, to put a database or cluster "across the
// network": the delay is applied per chunk without stopping the stream (a pipe with latency, not
// a slow pipe), so throughput is preserved while every round trip pays 2 × Delay. It can also
// lose HTTP replies: forward a request in full, then cut both connections as its reply begins —
// the server did the work, the client never hears of it.
package netproxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Proxy.
type Options struct {
	// Delay is added to every chunk in each direction (one way).
	Delay time.Duration
	// CutReply, when set, is called once per HTTP/1.x request with its request line (e.g.
	// "POST /_bulk HTTP/1.1"). When it returns true the request is forwarded in full and both
	// connections are closed as the first byte of the reply arrives, so the reply is lost after
	// the server acted on the request. Requests on a connection are told apart by the direction
	// of the bytes — a request ends where its reply begins — which holds for clients that wait
	// for each reply before sending the next request (every Go client; not HTTP pipelining, nor a
	// server that answers before it has read the whole body). Called from the connections'
	// goroutines: it must be safe for concurrent use.
	CutReply func(requestLine string) bool
}

// Proxy forwards connections from its listener to Target.
type Proxy struct {
	Target string
	Delay  time.Duration

	cutReply func(string) bool
	cuts     atomic.Int64

	ln     net.Listener
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// Start listens on addr ("127.0.0.1:0" for a free port) and forwards to target with oneWay
// delay each way until Close.
func Start(addr, target string, oneWay time.Duration) (*Proxy, error) {
	return StartWith(addr, target, Options{Delay: oneWay})
}

// StartWith listens on addr and forwards to target as o says until Close.
func StartWith(addr, target string, o Options) (*Proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &Proxy{Target: target, Delay: o.Delay, cutReply: o.CutReply, ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Cuts counts the replies cut so far (Options.CutReply).
func (p *Proxy) Cuts() int64 { return p.cuts.Load() }

// Addr is the proxy's listening address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Close stops accepting and cuts every open connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *Proxy) track(c net.Conn, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		if p.closed {
			return false
		}
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
	return true
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.handle(c)
		}()
	}
}

func (p *Proxy) handle(client net.Conn) {
	server, err := net.DialTimeout("tcp", p.Target, 5*time.Second)
	if err != nil {
		client.Close()
		return
	}
	if !p.track(client, true) || !p.track(server, true) {
		client.Close()
		server.Close()
		return
	}
	defer p.track(client, false)
	defer p.track(server, false)
	var once sync.Once
	kill := func() { once.Do(func() { client.Close(); server.Close() }) }
	var request, reply func([]byte) bool
	if p.cutReply != nil {
		ex := &exchange{decide: p.cutReply}
		request = ex.request
		reply = func(b []byte) bool {
			if ex.reply() {
				p.cuts.Add(1)
				return false
			}
			return true
		}
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(server, client, kill, request) }()
	go func() { defer wg.Done(); p.pipe(client, server, kill, reply) }()
	wg.Wait()
	kill()
}

// exchange follows the requests and replies of one connection for CutReply.
type exchange struct {
	decide func(string) bool

	mu        sync.Mutex
	inRequest bool   // bytes from the client since the last reply began
	line      []byte // the request line, as far as it has arrived
	decided   bool
	cut       bool
}

// maxLine bounds what is kept of a request line (longer ones are decided on their start).
const maxLine = 8 << 10

// request sees a chunk from the client; it always lets it through.
func (e *exchange) request(b []byte) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.inRequest { // the first bytes after a reply (or of the connection): a new request
		e.inRequest, e.line, e.decided, e.cut = true, e.line[:0], false, false
	}
	if e.decided {
		return true
	}
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		e.line = append(e.line, b[:i]...)
		e.settle()
	} else if e.line = append(e.line, b...); len(e.line) >= maxLine {
		e.settle()
	}
	return true
}

func (e *exchange) settle() {
	e.line = bytes.TrimRight(e.line[:min(len(e.line), maxLine)], "\r")
	e.cut, e.decided = e.decide(string(e.line)), true
}

// reply sees a chunk from the server and reports whether the connection is to be cut.
func (e *exchange) reply() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.inRequest {
		return false // the rest of a reply already let through
	}
	e.inRequest = false
	if !e.decided {
		e.settle()
	}
	return e.cut
}

type chunk struct {
	due  time.Time
	data []byte
}

// pipe copies src to dst, holding each chunk until Delay after it was read. At EOF it flushes
// what is queued and half-closes dst; on any error it kills both connections. see, when set,
// looks at every chunk as it is read; when it returns false both connections are killed and
// the chunk is dropped.
func (p *Proxy) pipe(dst, src net.Conn, kill func(), see func([]byte) bool) {
	q := make(chan chunk, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range q {
			if d := time.Until(c.due); d > 0 {
				time.Sleep(d)
			}
			if _, err := dst.Write(c.data); err != nil {
				kill()
				for range q { // let the reader finish
				}
				return
			}
		}
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	defer func() { close(q); <-done }()
	for {
		buf := make([]byte, 32<<10)
		n, err := src.Read(buf)
		if n > 0 && see != nil && !see(buf[:n]) {
			kill()
			return
		}
		if n > 0 {
			q <- chunk{due: time.Now().Add(p.Delay), data: buf[:n]}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				kill()
			}
			return
		}
	}
}
