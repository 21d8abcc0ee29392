// Package redistest runs a throwaway redis-server on a free loopback port
// for tests: no persistence, stopped in t.Cleanup. Stop kills it
// (an outage, data lost) and Restart starts it again on the same port.
// Tests are skipped with a clear message when redis-server is not
// installed.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is one redis-server process (and its successors after Restart).
type Server struct {
	t    testing.TB
	bin  string
	Port int

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Start runs redis-server on a free 127.0.0.1 port and waits until it
// accepts connections.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed (apt-get install redis-server; .ci/run installs it): cluster tests need a real Redis")
	}
	s := &Server{t: t, bin: bin}
	var last error
	for range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		s.Port = port
		if last = s.start(); last == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("redis-server did not start: %v", last)
	return nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Addr is host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// URL is the [cluster] redis value for this server.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

func (s *Server) start() error {
	cmd := exec.Command(s.bin, "--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--logfile", "", "--daemonize", "no")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return err
	}
	ready := make(chan struct{})
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(out)
		said := false
		for sc.Scan() {
			l := sc.Text()
			if !said && strings.Contains(l, "Ready to accept connections") {
				said = true
				close(ready)
			}
			select {
			case lines <- l:
			default:
			}
		}
		close(lines)
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-ready:
		done := make(chan struct{})
		go func() {
			<-exited
			close(done)
		}()
		s.mu.Lock()
		s.cmd, s.done = cmd, done
		s.mu.Unlock()
		return nil
	case err := <-exited:
		var tail []string
		for l := range lines {
			tail = append(tail, l)
		}
		return fmt.Errorf("redis-server on port %d exited (%v): %s", s.Port, err, strings.Join(tail, " | "))
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		return fmt.Errorf("redis-server on port %d not ready after 15s", s.Port)
	}
}

// Stop kills the server at once (SIGKILL: nothing saved) and waits for
// the process to exit, which closes its port. Safe to call twice.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.t.Errorf("redis-server on port %d did not exit after SIGKILL", s.Port)
	}
}

// Restart starts a fresh, empty server on the same port.
func (s *Server) Restart() {
	s.t.Helper()
	var err error
	for range 3 {
		if err = s.start(); err == nil {
			return
		}
	}
	s.t.Fatalf("redis-server restart: %v", err)
}
