// Package netproxy is a TCP proxy that adds a fixed one-way delay to every byte in both
// directions, to reproduce a database or cluster "across the network" on one machine. The delay
// is applied per chunk without stopping the stream (a pipe with latency, not a slow pipe), so
// throughput is preserved while every round trip pays 2 × Delay.
package netproxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Proxy forwards connections from its listener to Target with Delay each way.
type Proxy struct {
	Target string
	Delay  time.Duration

	ln     net.Listener
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// Start listens on addr ("127.0.0.1:0" for a free port) and serves until Close.
func Start(addr, target string, oneWay time.Duration) (*Proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &Proxy{Target: target, Delay: oneWay, ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

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
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(server, client, kill) }()
	go func() { defer wg.Done(); p.pipe(client, server, kill) }()
	wg.Wait()
	kill()
}

type chunk struct {
	due  time.Time
	data []byte
}

// pipe copies src to dst, holding each chunk until Delay after it was read. At EOF it flushes
// what is queued and half-closes dst; on any error it kills both connections.
func (p *Proxy) pipe(dst, src net.Conn, kill func()) {
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
