package mailtest

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy is a TCP proxy in front of an SMTP server that understands just
// enough SMTP to find the end of a message's DATA. It counts the
// connections it accepts (to prove that a client reuses one), can drop
// every connection or refuse new ones, and can lose the server's reply to
// the next end of DATA: the server has accepted the message, the client
// never hears so. It reads plaintext SMTP only (no STARTTLS behind it).
type Proxy struct {
	target string
	ln     net.Listener

	accepted atomic.Int64
	armed    atomic.Bool
	lost     atomic.Int64

	mu     sync.Mutex
	down   bool
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// NewProxy listens on a free loopback port and forwards to target
// (host:port) until the test ends.
func NewProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("proxy: listen: %v", err)
	}
	p := &Proxy{target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(p.close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Accepted counts the connections forwarded so far.
func (p *Proxy) Accepted() int { return int(p.accepted.Load()) }

// LoseNextDataReply arms a one-shot fault: after the client's next
// end-of-DATA "." has been forwarded and the server has replied, the
// reply is dropped and both connections are reset.
func (p *Proxy) LoseNextDataReply() { p.armed.Store(true) }

// DataRepliesLost counts the replies LoseNextDataReply dropped.
func (p *Proxy) DataRepliesLost() int { return int(p.lost.Load()) }

// Down resets every open connection and refuses new ones until Up.
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

// CutAll resets every open connection and keeps accepting.
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
			return
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
		p.accepted.Add(1)
		p.mu.Lock()
		p.conns[client], p.conns[server] = struct{}{}, struct{}{}
		p.wg.Add(2)
		p.mu.Unlock()
		pr := &pair{p: p, client: client, server: server}
		go pr.fromClient()
		go pr.fromServer()
	}
}

// pair is one proxied connection.
type pair struct {
	p              *Proxy
	client, server net.Conn
	loseReply      atomic.Bool
}

func (pr *pair) end(err error) {
	if err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
		reset(pr.client)
		reset(pr.server)
	} else {
		_ = pr.client.Close()
		_ = pr.server.Close()
	}
	pr.p.mu.Lock()
	delete(pr.p.conns, pr.client)
	delete(pr.p.conns, pr.server)
	pr.p.mu.Unlock()
	pr.p.wg.Done()
}

var endOfData = []byte("\r\n.\r\n")

// fromClient forwards commands, watching for "DATA" and then for the
// "\r\n.\r\n" that ends the message (go-mail does not pipeline, so
// commands arrive one at a time).
func (pr *pair) fromClient() {
	buf := make([]byte, 32<<10)
	var line []byte // the command line being read, outside DATA
	var tail []byte // the last bytes of the message, inside DATA
	inData := false
	for {
		n, err := pr.client.Read(buf)
		chunk := buf[:n]
		for len(chunk) > 0 {
			if !inData {
				i := bytes.IndexByte(chunk, '\n')
				if i < 0 {
					line = append(line, chunk...)
					if werr := write(pr.server, chunk); werr != nil {
						pr.end(werr)
						return
					}
					break
				}
				line = append(line, chunk[:i+1]...)
				if bytes.EqualFold(bytes.TrimSpace(line), []byte("DATA")) {
					inData, tail = true, append(tail[:0], '\r', '\n')
				}
				line = line[:0]
				if werr := write(pr.server, chunk[:i+1]); werr != nil {
					pr.end(werr)
					return
				}
				chunk = chunk[i+1:]
				continue
			}
			joined := append(append([]byte(nil), tail...), chunk...)
			j := bytes.Index(joined, endOfData)
			if j < 0 {
				if werr := write(pr.server, chunk); werr != nil {
					pr.end(werr)
					return
				}
				tail = append(tail[:0], joined[max(0, len(joined)-len(endOfData)+1):]...)
				break
			}
			upto := j + len(endOfData) - len(tail) // bytes of chunk up to the end mark
			if pr.p.armed.CompareAndSwap(true, false) {
				pr.loseReply.Store(true)
			}
			if werr := write(pr.server, chunk[:upto]); werr != nil {
				pr.end(werr)
				return
			}
			inData = false
			chunk = chunk[upto:]
		}
		if err != nil {
			pr.end(err)
			return
		}
	}
}

// fromServer forwards replies, except the one the fault is armed for.
func (pr *pair) fromServer() {
	buf := make([]byte, 32<<10)
	for {
		n, err := pr.server.Read(buf)
		if n > 0 {
			if pr.loseReply.Load() {
				pr.p.lost.Add(1)
				reset(pr.client)
				reset(pr.server)
				pr.end(net.ErrClosed)
				return
			}
			if werr := write(pr.client, buf[:n]); werr != nil {
				pr.end(werr)
				return
			}
		}
		if err != nil {
			pr.end(err)
			return
		}
	}
}

func write(c net.Conn, b []byte) error {
	_, err := c.Write(b)
	return err
}

func (p *Proxy) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	_ = p.ln.Close()
	p.CutAll()
	p.wg.Wait()
}
