package pgtest

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
)

// Proxy is a TCP proxy in front of the test Postgres, so that a test can
// take "the network" away from a client and give it back: Down drops every
// connection and refuses new ones, Up accepts again, CutAll drops what is
// open (as a server restart or a broken link would) and keeps accepting.
type Proxy struct {
	tb     testing.TB
	target string
	ln     net.Listener

	mu     sync.Mutex
	down   bool
	closed bool
	conns  map[net.Conn]struct{} // both halves of every open pair
	armed  bool                  // lose the next COMMIT's answer
	reset  bool                  // and reset the connection (else stall it)
	lost   int
	wg     sync.WaitGroup
}

// commitComplete is Postgres' CommandComplete message for a COMMIT:
// 'C', int32 length 11, "COMMIT\x00".
var commitComplete = []byte("C\x00\x00\x00\x0bCOMMIT\x00")

// NewProxy listens on a free loopback port and forwards every connection
// to targetAddr (host:port). It is closed when the test ends.
func NewProxy(tb testing.TB, targetAddr string) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("proxy: listen: %v", err)
	}
	p := &Proxy{tb: tb, target: targetAddr, ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(p.close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL returns dbURL with its host and port replaced by the proxy's.
func (p *Proxy) URL(dbURL string) string {
	p.tb.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		p.tb.Fatalf("proxy: parse database URL: %v", err)
	}
	u.Host = p.Addr()
	return u.String()
}

// TargetAddr is the host:port of the Postgres server in dbURL, for NewProxy.
func TargetAddr(tb testing.TB, dbURL string) string {
	tb.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		tb.Fatalf("parse database URL: %v", err)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "5432"
	}
	return net.JoinHostPort(host, port)
}

// Down drops every open connection and refuses new ones (each is reset at
// once) until Up.
func (p *Proxy) Down() {
	p.mu.Lock()
	p.down = true
	p.mu.Unlock()
	p.CutAll()
}

// Up accepts connections again.
func (p *Proxy) Up() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// CutAll resets every open connection now and keeps accepting new ones.
func (p *Proxy) CutAll() {
	p.mu.Lock()
	conns := make([]net.Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		reset(c)
	}
}

// LoseNextCommitAnswer arms a one-shot fault: the next time Postgres
// confirms a COMMIT, the confirmation is not passed on. With reset the
// connection is then reset (the client gets an error at once); without,
// it stalls, and the client waits until it gives up or is killed. Either
// way the transaction is committed and the client cannot know: the window
// between "Postgres committed" and "the edge marked its rows synced".
func (p *Proxy) LoseNextCommitAnswer(reset bool) {
	p.mu.Lock()
	p.armed, p.reset = true, reset
	p.mu.Unlock()
}

// CommitAnswersLost counts the faults LoseNextCommitAnswer caused.
func (p *Proxy) CommitAnswersLost() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lost
}

// reset closes c with an RST rather than a FIN, as a dead peer or a
// refused connection looks to the client.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		refuse := p.down || p.closed
		p.mu.Unlock()
		if refuse {
			reset(client)
			continue
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			reset(client)
			continue
		}
		p.mu.Lock()
		if p.down || p.closed {
			p.mu.Unlock()
			reset(client)
			reset(server)
			continue
		}
		p.conns[client], p.conns[server] = struct{}{}, struct{}{}
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pipe(client, server, true)
		go p.pipe(server, client, false)
	}
}

// pipe copies src to dst (fromServer: src is Postgres); when either side
// ends, both are closed so that the other direction ends too.
func (p *Proxy) pipe(dst, src net.Conn, fromServer bool) {
	defer p.wg.Done()
	var err error
	if fromServer {
		err = p.copyAnswers(dst, src)
	} else {
		_, err = io.Copy(dst, src)
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		reset(dst)
		reset(src)
	} else {
		_ = dst.Close()
		_ = src.Close()
	}
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// copyAnswers copies what the server sends, unless a COMMIT confirmation
// is in it while the fault is armed: then it resets both sides, or passes
// nothing more until the connection ends.
// The tail of the previous read is kept so that a confirmation split
// across two reads is seen too.
func (p *Proxy) copyAnswers(client, server net.Conn) error {
	buf := make([]byte, 32<<10)
	var tail []byte
	for {
		n, err := server.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			p.mu.Lock()
			hit := p.armed && bytes.Contains(append(tail, chunk...), commitComplete)
			resetNow := p.reset
			if hit {
				p.armed = false
				p.lost++
			}
			p.mu.Unlock()
			switch {
			case hit && resetNow:
				reset(client)
				reset(server)
				return net.ErrClosed
			case hit:
				_, err := io.Copy(io.Discard, server)
				return err
			}
			if _, werr := client.Write(chunk); werr != nil {
				return werr
			}
			tail = append(tail[:0], chunk[max(0, n-len(commitComplete)):]...)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func (p *Proxy) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	_ = p.ln.Close()
	p.CutAll()
	p.wg.Wait()
}
