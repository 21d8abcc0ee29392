package main

// The parent's side of a bench child process: a re-exec of this binary
// that speaks one JSON object a line on its stdin and stdout.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"time"
)

// loadReady is the child's first line: where its DNS server and sink are.
type loadReady struct {
	DNS   string `json:"dns"`
	Port  int    `json:"port"`
	Error string `json:"error,omitempty"`
}

// loadGo is the parent's one command: inject into addr.
type loadGo struct {
	Addr string `json:"addr"`
}

// loadResult is the child's last line.
type loadResult struct {
	InjectStart   int64   `json:"inject_start"` // unix ns
	InjectEnd     int64   `json:"inject_end"`
	Injected      int64   `json:"injected"`
	Errors        int64   `json:"errors"`
	FirstError    string  `json:"first_error,omitempty"`
	AckP50Ms      float64 `json:"ack_p50_ms"`
	AckP99Ms      float64 `json:"ack_p99_ms"`
	SinkCounted   int64   `json:"sink_counted"`
	SinkFirst     int64   `json:"sink_first"`
	SinkLast      int64   `json:"sink_last"`
	SinkMaxConns  int     `json:"sink_max_conns"`
	SinkConns     int64   `json:"sink_conns"`
	SinkWaited    int64   `json:"sink_waited"`
	SinkChunked   int64   `json:"sink_chunked"`
	SinkMaxPerCon int     `json:"sink_max_per_conn"`
	SinkWaitError string  `json:"sink_wait_error,omitempty"`
	CPUNs         int64   `json:"cpu_ns"`
}

// child is a re-exec of this binary speaking JSON lines.
type child struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan []byte
}

func startChild(ctx context.Context, stderr io.Writer, args ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this binary to re-exec: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe, append([]string{"bench"}, args...)...)
	cmd.Stderr = stderr
	cmd.WaitDelay = 5 * time.Second
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", exe, err)
	}
	c := &child{cmd: cmd, in: in, lines: make(chan []byte, 4)}
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			c.lines <- slices.Clone(sc.Bytes())
		}
	}()
	return c, nil
}

// next decodes the child's next line into v.
func (c *child) next(ctx context.Context, v any) error {
	select {
	case l, ok := <-c.lines:
		if !ok {
			return errors.New("the bench child exited early (see its errors above)")
		}
		return json.Unmarshal(l, v)
	case <-ctx.Done():
		return fmt.Errorf("waiting for the bench child: %w", ctx.Err())
	}
}

func (c *child) send(v any) error {
	b, _ := json.Marshal(v)
	_, err := c.in.Write(append(b, '\n'))
	return err
}

// stop closes its stdin (which ends it) and waits, killing it after a bound.
func (c *child) stop() {
	c.in.Close()
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}
