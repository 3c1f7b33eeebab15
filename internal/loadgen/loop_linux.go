package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// runLoop drives cfg.Workers connections from one goroutine locked to one
// OS thread, with level-triggered epoll, the way wrk does. A request costs
// a write, a read and a share of one epoll_wait. The raw client also pays,
// per request, a read that finds nothing yet, and the goroutine switches
// and thread wake-ups around it. On a virtual machine where every system
// call and context switch goes through the hypervisor, that is a fifth of
// the generator's CPU, which it takes from the server it shares the
// machine with.
//
// It counts like the other clients: every request number handed out is a
// request, answered or failed, except those still in flight when ctx ends
// the run.
func runLoop(ctx context.Context, req rawRequest, classify func(Answer) (bool, string), cfg Config, w *worker, next *atomic.Uint64) error {
	sa, family, err := resolveSockaddr(req.addr)
	if err != nil {
		return err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll: %w", err)
	}
	defer unix.Close(epfd)
	l := &loop{req: req, classify: classify, cfg: cfg, w: w, next: next, sa: sa, family: family, epfd: epfd,
		conns: make([]*loopConn, cfg.Workers)}
	for i := range l.conns {
		l.conns[i] = &loopConn{idx: i, fd: -1, msg: append([]byte(nil), req.msg...), buf: make([]byte, maxLine)}
	}
	defer func() {
		for _, c := range l.conns {
			c.close()
		}
	}()
	for _, c := range l.conns {
		l.start(c, time.Now())
	}
	events := make([]unix.EpollEvent, min(cfg.Workers, 256))
	lastScan := time.Now()
	for ctx.Err() == nil && l.busy() {
		wait := 10 // ms
		if len(l.restart) > 0 {
			wait = 0
		}
		n, err := unix.EpollWait(epfd, events, wait)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("epoll wait: %w", err)
		}
		now := time.Now()
		for _, ev := range events[:max(n, 0)] {
			l.handle(l.conns[ev.Fd], ev.Events, now)
		}
		restart := l.restart
		l.restart = nil
		for _, c := range restart {
			l.start(c, now)
		}
		// Timeouts are looked for every 10 ms at most, so a request may
		// overrun its timeout by that much.
		if now.Sub(lastScan) >= 10*time.Millisecond {
			lastScan = now
			for _, c := range l.conns {
				if c.inFlight && now.Sub(c.begin) > cfg.Timeout {
					l.failAndRestart(c, os.ErrDeadlineExceeded)
				}
			}
		}
	}
	return nil
}

type loop struct {
	req      rawRequest
	classify func(Answer) (bool, string)
	cfg      Config
	w        *worker
	next     *atomic.Uint64
	sa       unix.Sockaddr
	family   int
	epfd     int
	conns    []*loopConn
	// restart holds connections whose request failed, to send their next
	// one on a new connection after this round of events. Doing it at once
	// would recurse while the server refuses connections.
	restart []*loopConn
}

// loopConn is one connection and the request it has in flight.
type loopConn struct {
	idx        int
	fd         int // -1 when closed
	connecting bool
	inFlight   bool
	begin      time.Time
	msg        []byte // this connection's copy of the request's bytes
	sent       int    // bytes of msg written so far
	buf        []byte // received bytes; unread ones are buf[r:w]
	r, w       int
}

// busy reports whether a connection still has a request in flight; with
// a request count, the loop ends when the last one is answered.
func (l *loop) busy() bool {
	if len(l.restart) > 0 {
		return true
	}
	for _, c := range l.conns {
		if c.inFlight {
			return true
		}
	}
	return false
}

// start sends c's next request, on a new connection if c has none. It
// leaves c idle once the run's request count is used up.
func (l *loop) start(c *loopConn, now time.Time) {
	n := l.next.Add(1) - 1
	if l.cfg.Requests > 0 && int64(n) >= l.cfg.Requests {
		c.inFlight = false
		return
	}
	l.req.fill(c.msg, l.cfg.FirstNumber+n)
	c.inFlight, c.begin, c.sent = true, now, 0
	if c.fd < 0 {
		if err := l.dial(c); err != nil {
			l.failAndRestart(c, err)
		}
		return // the request goes out once connected
	}
	l.write(c)
}

func (l *loop) dial(c *loopConn) error {
	fd, err := unix.Socket(l.family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	c.fd, c.r, c.w = fd, 0, 0
	// As net.Dial does: requests are written whole, and Nagle would only
	// hold them back.
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		return fmt.Errorf("set TCP_NODELAY: %w", err)
	}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLOUT, Fd: int32(c.idx)}); err != nil {
		return fmt.Errorf("epoll add: %w", err)
	}
	c.connecting = true
	if err := unix.Connect(fd, l.sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
		return err
	}
	return nil
}

// write sends what is left of c's request, and waits for room when the
// socket takes only part of it.
func (l *loop) write(c *loopConn) {
	for c.sent < len(c.msg) {
		n, err := unix.Write(c.fd, c.msg[c.sent:])
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			l.watch(c, unix.EPOLLIN|unix.EPOLLOUT)
			return
		case err != nil:
			l.failAndRestart(c, err)
			return
		}
		c.sent += n
	}
}

// watch changes the events c is waited on for.
func (l *loop) watch(c *loopConn, events uint32) {
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: events, Fd: int32(c.idx)}); err != nil {
		l.failAndRestart(c, fmt.Errorf("epoll modify: %w", err))
	}
}

func (l *loop) handle(c *loopConn, events uint32, now time.Time) {
	if c.fd < 0 {
		return
	}
	if c.connecting {
		soErr, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err == nil && soErr != 0 {
			err = unix.Errno(soErr)
		}
		if err != nil {
			l.failAndRestart(c, err)
			return
		}
		if events&unix.EPOLLOUT == 0 {
			return
		}
		c.connecting = false
		l.watch(c, unix.EPOLLIN)
		if c.fd >= 0 {
			l.write(c)
		}
		return
	}
	if events&unix.EPOLLOUT != 0 && c.sent < len(c.msg) {
		l.write(c)
		if c.fd < 0 {
			return
		}
		if c.sent == len(c.msg) {
			l.watch(c, unix.EPOLLIN)
		}
	}
	if events&(unix.EPOLLIN|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		l.read(c, now)
	}
}

// read takes what has arrived on c (one read: epoll is level-triggered,
// so anything left over is reported again) and answers the request when
// the whole answer is there.
func (l *loop) read(c *loopConn, now time.Time) {
	if c.r > 0 && c.r == c.w {
		c.r, c.w = 0, 0
	}
	if c.w == len(c.buf) {
		if c.r > 0 {
			c.w = copy(c.buf, c.buf[c.r:c.w])
			c.r = 0
		} else {
			if len(c.buf) >= maxAnswer {
				l.failAndRestart(c, fmt.Errorf("%w: answer longer than %d bytes", errMalformed, maxAnswer))
				return
			}
			c.buf = append(c.buf, make([]byte, len(c.buf))...)
		}
	}
	n, err := unix.Read(c.fd, c.buf[c.w:])
	switch {
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
		return
	case err != nil:
		l.failAndRestart(c, err)
		return
	case n == 0:
		l.failAndRestart(c, io.ErrUnexpectedEOF)
		return
	}
	c.w += n
	if !c.inFlight {
		// Nothing was asked: the bytes are out of step.
		l.failAndRestart(c, fmt.Errorf("%w: %d bytes nobody asked for", errMalformed, n))
		return
	}
	src := sliceSource{b: c.buf[c.r:c.w]}
	a, keepAlive, err := readAnswer(&src, l.req.head)
	if errors.Is(err, errIncomplete) {
		return
	}
	if err != nil {
		l.failAndRestart(c, err)
		return
	}
	c.r += src.off
	l.w.record(l.classify, a, now.Sub(c.begin))
	c.inFlight = false
	if !keepAlive || c.r != c.w {
		c.close()
	}
	l.start(c, now)
}

// failAndRestart counts c's request as failed, drops its connection and
// queues c to send the next request on a new one.
func (l *loop) failAndRestart(c *loopConn, err error) {
	c.close()
	if c.inFlight {
		l.w.fail(err)
		c.inFlight = false
		l.restart = append(l.restart, c)
	}
}

func (c *loopConn) close() {
	if c.fd >= 0 {
		_ = unix.Close(c.fd) // also takes it out of the epoll set
		c.fd, c.connecting = -1, false
	}
}

// maxAnswer bounds one answer the loop client holds; sign-up answers are
// a few hundred bytes.
const maxAnswer = 1 << 20

// errIncomplete means the answer has not all arrived yet.
var errIncomplete = errors.New("answer incomplete")

// sliceSource gives readAnswer the bytes received so far; running out of
// them is errIncomplete, not the end of the answer.
type sliceSource struct {
	b   []byte
	off int
}

func (s *sliceSource) ReadSlice(delim byte) ([]byte, error) {
	for i, c := range s.b[s.off:] {
		if c == delim {
			line := s.b[s.off : s.off+i+1]
			s.off += i + 1
			return line, nil
		}
		if i+1 >= maxLine {
			return nil, fmt.Errorf("%w: line longer than %d bytes", errMalformed, maxLine)
		}
	}
	return nil, errIncomplete
}

func (s *sliceSource) Discard(n int) (int, error) {
	if len(s.b)-s.off < n {
		return 0, errIncomplete
	}
	s.off += n
	return n, nil
}

// Read serves answers that run to the end of the connection, which the
// loop client does not take: it needs to know where an answer ends.
func (s *sliceSource) Read([]byte) (int, error) {
	return 0, fmt.Errorf("%w: answer without a length", errMalformed)
}

func resolveSockaddr(addr string) (unix.Sockaddr, int, error) {
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, 0, err
	}
	if ip4 := ta.IP.To4(); ip4 != nil {
		sa := &unix.SockaddrInet4{Port: ta.Port}
		copy(sa.Addr[:], ip4)
		return sa, unix.AF_INET, nil
	}
	sa := &unix.SockaddrInet6{Port: ta.Port}
	copy(sa.Addr[:], ta.IP.To16())
	return sa, unix.AF_INET6, nil
}
