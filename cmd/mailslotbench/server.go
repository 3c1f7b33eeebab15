package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// serverOpts says how to start one `mailslot serve`.
type serverOpts struct {
	// Env is added to the server's environment after the benchmark's own
	// settings, so that it can override them (MAILSLOT_GROUP_COMMIT=off,
	// GOMAXPROCS=1).
	Env []string
	// CPUs, when set, pins the server with `taskset -c CPUs`.
	CPUs string
	// Command, when set, is run instead of `bin serve`.
	Command []string
}

// server is a running `mailslot serve` with its own data directory.
type server struct {
	cmd     *exec.Cmd
	URL     string // public listener, http://127.0.0.1:port
	Private string // private listener
	dataDir string
	logPath string
	logFile *os.File
	exited  chan struct{}
	waitErr error
}

// strippedEnv are the variables of the benchmark's own environment that
// never reach the server: each scenario sets what it wants explicitly.
var strippedEnv = []string{"MAILSLOT_", "GOMAXPROCS=", "GODEBUG=", "GOGC=", "GOMEMLIMIT=", "DATABASE_URL="}

// startServer starts bin with a fresh data directory under root on free
// loopback ports, and returns once /readyz answers 200.
func startServer(ctx context.Context, bin, root string, o serverOpts, extraEnv []string) (*server, error) {
	dataDir, err := os.MkdirTemp(root, "mailslotbench-")
	if err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	pub, err := freePort()
	if err != nil {
		return nil, err
	}
	priv, err := freePort()
	if err != nil {
		return nil, err
	}
	env := make([]string, 0, len(os.Environ())+16)
	for _, kv := range os.Environ() {
		keep := true
		for _, p := range strippedEnv {
			keep = keep && !strings.HasPrefix(kv, p)
		}
		if keep {
			env = append(env, kv)
		}
	}
	env = append(env,
		"MAILSLOT_ENV=development",
		"MAILSLOT_ADDR="+pub,
		"MAILSLOT_PRIVATE_ADDR="+priv,
		"MAILSLOT_DATA_DIR="+dataDir,
		"MAILSLOT_NODE_ID=bench",
		"MAILSLOT_RATE_RPS=0",
		"MAILSLOT_LOG_LEVEL=info",
		// As in the production image and fly.toml: the memory cap the edge
		// runs under (its whole RSS stays within 128 MiB; deploy/).
		"GOMEMLIMIT=80MiB",
	)
	env = append(env, extraEnv...)
	env = append(env, o.Env...)

	args := []string{bin, "serve"}
	if len(o.Command) > 0 {
		args = o.Command
	}
	if o.CPUs != "" {
		ts, err := exec.LookPath("taskset")
		if err != nil {
			return nil, fmt.Errorf("pin server to CPUs %s: %w (apt-get install util-linux)", o.CPUs, err)
		}
		// taskset execs the server, so the pid stays the server's.
		args = append([]string{ts, "-c", o.CPUs}, args...)
	}
	s := &server{
		URL:     "http://" + pub,
		Private: "http://" + priv,
		dataDir: dataDir,
		logPath: filepath.Join(dataDir, "server.log"),
		exited:  make(chan struct{}),
	}
	if s.logFile, err = os.Create(s.logPath); err != nil {
		return nil, fmt.Errorf("create server log: %w", err)
	}
	s.cmd = exec.Command(args[0], args[1:]...)
	s.cmd.Env = env
	s.cmd.Stdout = s.logFile
	s.cmd.Stderr = s.logFile
	if err := s.cmd.Start(); err != nil {
		_ = s.logFile.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(ctx, 30*time.Second); err != nil {
		_ = s.stop()
		return nil, fmt.Errorf("%w\n%s", err, s.logTail(20))
	}
	return s, nil
}

// freePort finds a loopback port that is free now. Another process could
// take it before the server binds it; startServer then fails loudly.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func (s *server) waitReady(ctx context.Context, limit time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("server exited before it was ready: %v", s.waitErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		resp, err := client.Get(s.URL + "/readyz")
		if err != nil {
			continue
		}
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
	}
	return fmt.Errorf("server not ready after %s", limit)
}

// pid is the server's process id.
func (s *server) pid() int { return s.cmd.Process.Pid }

// stop sends SIGTERM and waits for a clean exit (SIGKILL after 30s), then
// removes the data directory. It reports an unclean stop as an error.
func (s *server) stop() error {
	defer os.RemoveAll(s.dataDir)
	defer s.logFile.Close()
	select {
	case <-s.exited:
		return fmt.Errorf("server had already exited: %v\n%s", s.waitErr, s.logTail(20))
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return fmt.Errorf("server did not stop within 30s of SIGTERM\n%s", s.logTail(20))
	}
	if s.waitErr != nil {
		return fmt.Errorf("server stopped with %v\n%s", s.waitErr, s.logTail(20))
	}
	return nil
}

// logContains reports whether the server's log has a line containing sub.
func (s *server) logContains(sub string) bool {
	b, err := os.ReadFile(s.logPath)
	return err == nil && bytes.Contains(b, []byte(sub))
}

func (s *server) logTail(n int) string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "server log (last lines):\n  " + strings.Join(lines, "\n  ")
}

// memory is one reading of /proc/<pid>/status, in bytes.
type memory struct {
	RSS int64 // VmRSS: resident now
	HWM int64 // VmHWM: the most ever resident
}

func readMemory(pid int) (memory, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return memory{}, err
	}
	defer f.Close()
	var m memory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch name {
		case "VmRSS":
			dst = &m.RSS
		case "VmHWM":
			dst = &m.HWM
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if err != nil {
			return m, fmt.Errorf("parse %s %q: %w", name, val, err)
		}
		*dst = kb << 10
	}
	if m.RSS == 0 {
		return m, errors.New("no VmRSS in /proc status")
	}
	return m, sc.Err()
}

// cpuTime is the CPU time (user + system) that process pid has used, from
// /proc/<pid>/stat; its resolution is the kernel's clock tick (10 ms).
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name, field 2, may contain spaces; fields after it don't.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, errors.New("short /proc stat line")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("parse /proc stat: %w", err)
	}
	const ticksPerSecond = 100 // USER_HZ, the same on every Linux we run on
	return time.Duration(utime+stime) * time.Second / ticksPerSecond, nil
}

// selfCPUTime is this process's CPU time (user + system).
func selfCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rssSampler records the largest VmRSS seen while it runs.
type rssSampler struct {
	stop chan struct{}
	wg   sync.WaitGroup
	max  int64
}

func sampleRSS(pid int, every time.Duration) *rssSampler {
	r := &rssSampler{stop: make(chan struct{})}
	r.wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if m, err := readMemory(pid); err == nil {
				r.max = max(r.max, m.RSS)
			}
			select {
			case <-r.stop:
				return
			case <-t.C:
			}
		}
	})
	return r
}

// Stop ends sampling and returns the largest VmRSS seen.
func (r *rssSampler) Stop() int64 {
	close(r.stop)
	r.wg.Wait()
	return r.max
}
