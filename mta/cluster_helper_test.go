package mta_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/mta"
	"github.com/penstock-mta/penstock/queue"
	"github.com/penstock-mta/penstock/quota"
	"github.com/penstock-mta/penstock/sim"
)

// The cluster tests run each Penstock node as a process of its own: the
// test binary started again with -test.run=^TestClusterHelper$ and the
// node's settings in the environment, each with its own spool, all
// sending to one simulated world and sharing one redis-server.

// clusterLeaseTTL is the lease TTL of every test node.
const clusterLeaseTTL = 2 * time.Second

// clusterRatePerHour is the shared messages_per_hour of the "rate"
// scenario: one message every 0.25 s across the nodes.
const clusterRatePerHour = 14400

// clusterRule is the MX rule the tests exercise: every simulated MX host
// *.cluster.test, counted over the whole rule across nodes.
func clusterRule(c *config.Config, perHour int) {
	c.MXRules = []config.MXRule{{Name: "shared", MX: config.Patterns{"*.cluster.test"}, Scope: "rule",
		MaxConnections: 4, MaxMessagesPerConnection: 10, MessagesPerHour: perHour}}
}

// clusterScenario adapts a node's configuration to a test.
func clusterScenario(name string, c *config.Config) {
	switch name {
	case "rate":
		clusterRule(c, clusterRatePerHour)
	case "flow":
		clusterRule(c, 0)
		fastFlow(c)
		c.FlowControl.Patterns = []config.FlowPattern{{Match: `\[TSS04\]`, Action: "backoff", Duration: config.Duration(20 * time.Second)}}
	default:
		clusterRule(c, 0)
	}
}

// TestClusterHelper is not a test: it is one cluster node, run by the
// tests below as a separate process. It prints "READY <smtp> <http>",
// then "MODE <quota mode>" at each change, and shuts down cleanly when
// its stdin closes.
func TestClusterHelper(t *testing.T) {
	if os.Getenv("PENSTOCK_CLUSTER_HELPER") != "1" {
		t.Skip("helper process only")
	}
	dir := os.Getenv("PENSTOCK_DIR")
	cfg := config.Default()
	cfg.Server.Hostname = "penstock.test"
	cfg.Server.SpoolDir = filepath.Join(dir, "spool")
	cfg.Server.LogDir = filepath.Join(dir, "log")
	cfg.DNS.Nameservers = []string{os.Getenv("PENSTOCK_NS")}
	cfg.DNS.Timeout = config.Duration(2 * time.Second)
	cfg.Delivery.Port, _ = strconv.Atoi(os.Getenv("PENSTOCK_PORT"))
	cfg.Delivery.Retry = []config.Duration{config.Duration(200 * time.Millisecond)}
	cfg.SMTP.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Sources = []config.Source{{Name: "out", IP: os.Getenv("PENSTOCK_SOURCE"), EHLO: "penstock.test"}}
	cfg.Cluster = config.Cluster{Redis: os.Getenv("PENSTOCK_REDIS"), Node: os.Getenv("PENSTOCK_NODE"), LeaseTTL: config.Duration(clusterLeaseTTL)}
	clusterScenario(os.Getenv("PENSTOCK_SCENARIO"), cfg)
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	level := slog.LevelError
	if os.Getenv("PENSTOCK_VERBOSE") == "1" {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("proc", cfg.Cluster.Node)
	m, err := mta.New(cfg, mta.Options{Logger: logger})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	if err := m.Start(context.Background()); err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	var out sync.Mutex
	say := func(s string) {
		out.Lock()
		fmt.Println(s)
		out.Unlock()
	}
	say("READY " + m.SMTPAddr() + " " + m.HTTPAddr())
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(done)
	}()
	modes, ok := m.Quotas.(interface {
		State() quota.RedisState
		Changed() <-chan struct{}
	})
	if !ok {
		fmt.Println("ERROR the quota store is not the cluster's")
		os.Exit(1)
	}
	last, lastSusp := "", ""
	// The queue announces no change of its suspensions: look every 20ms.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ch := modes.Changed()
		if mode := modes.State().Mode; mode != last {
			last = mode
			say("MODE " + mode)
		}
		if susp := suspKeys(m.Queue.Suspensions()); susp != lastSusp {
			lastSusp = susp
			say("SUSP " + susp)
		}
		select {
		case <-ch:
		case <-tick.C:
		case <-done:
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			m.Shutdown(ctx)
			cancel()
			// Until mta.Shutdown closes the cluster store itself.
			if c, ok := m.Quotas.(interface{ Close() error }); ok {
				c.Close()
			}
			return
		}
	}
}

// suspKeys lists the keys of a set of suspensions, sorted, comma-separated.
func suspKeys(set map[string]string) string {
	return strings.Join(slices.Sorted(maps.Keys(set)), ",")
}

// clusterNode is one node process as the test sees it.
type clusterNode struct {
	t      *testing.T
	name   string
	source string // its source IP: the provider counts per client IP
	dir    string
	env    []string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	smtp   string
	http   string
	modeMu sync.Mutex
	mode   string
	modeCh chan struct{} // closed and replaced at each MODE or SUSP line
	susp   string        // the last SUSP line: its suspensions
	exited chan struct{}
}

// clusterEnv is what every node of one test shares.
type clusterEnv struct {
	world    *sim.World
	redisURL string
	scenario string
}

// startNode starts node name (source 127.0.0.<10+i>) in dir and waits
// for it to be ready.
func startNode(t *testing.T, e clusterEnv, name, source, dir string) *clusterNode {
	t.Helper()
	n := &clusterNode{t: t, name: name, source: source, dir: dir, modeCh: make(chan struct{})}
	n.env = append(os.Environ(), "PENSTOCK_CLUSTER_HELPER=1", "PENSTOCK_DIR="+dir, "PENSTOCK_NS="+e.world.Nameserver(),
		"PENSTOCK_PORT="+strconv.Itoa(e.world.Port), "PENSTOCK_REDIS="+e.redisURL, "PENSTOCK_NODE="+name,
		"PENSTOCK_SOURCE="+source, "PENSTOCK_SCENARIO="+e.scenario)
	if testing.Verbose() {
		n.env = append(n.env, "PENSTOCK_VERBOSE=1")
	}
	n.start()
	return n
}

func (n *clusterNode) start() {
	t := n.t
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestClusterHelper$", "-test.v=false")
	cmd.Env = n.env
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.cmd, n.stdin, n.exited = cmd, stdin, make(chan struct{})
	exited := n.exited
	t.Cleanup(func() { n.kill() })
	ready := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "READY "):
				ready <- strings.Fields(line)[1:]
			case strings.HasPrefix(line, "MODE "):
				n.modeMu.Lock()
				n.mode = strings.TrimPrefix(line, "MODE ")
				close(n.modeCh)
				n.modeCh = make(chan struct{})
				n.modeMu.Unlock()
			case strings.HasPrefix(line, "SUSP "):
				n.modeMu.Lock()
				n.susp = strings.TrimPrefix(line, "SUSP ")
				close(n.modeCh)
				n.modeCh = make(chan struct{})
				n.modeMu.Unlock()
			case strings.HasPrefix(line, "ERROR"):
				t.Errorf("node %s: %s", n.name, line)
			}
		}
		cmd.Wait()
		close(exited)
	}()
	select {
	case f := <-ready:
		n.smtp, n.http = f[0], f[1]
	case <-exited:
		t.Fatalf("node %s exited before it was ready", n.name)
	case <-time.After(30 * time.Second):
		t.Fatalf("node %s not ready after 30s", n.name)
	}
}

// waitMode waits for the node to report quota mode (a MODE line).
func (n *clusterNode) waitMode(mode string, d time.Duration) {
	n.t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		n.modeMu.Lock()
		cur, ch := n.mode, n.modeCh
		n.modeMu.Unlock()
		if cur == mode {
			return
		}
		select {
		case <-ch:
		case <-n.exited:
			n.t.Fatalf("node %s exited while waiting for mode %s", n.name, mode)
		case <-deadline.C:
			n.t.Fatalf("node %s: quota mode %q after %s, want %q", n.name, cur, d, mode)
		}
	}
}

// waitSusp waits for the node to report its suspensions as keys (sorted,
// comma-separated: a SUSP line).
func (n *clusterNode) waitSusp(keys string, d time.Duration) {
	n.t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		n.modeMu.Lock()
		cur, ch := n.susp, n.modeCh
		n.modeMu.Unlock()
		if cur == keys {
			return
		}
		select {
		case <-ch:
		case <-n.exited:
			n.t.Fatalf("node %s exited while waiting for suspensions %q", n.name, keys)
		case <-deadline.C:
			n.t.Fatalf("node %s: suspensions %q after %s, want %q", n.name, cur, d, keys)
		}
	}
}

// kill sends SIGKILL and waits for the process to end.
func (n *clusterNode) kill() {
	if n.cmd == nil {
		return
	}
	n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
}

// stop closes stdin (a clean shutdown) and waits for the process.
func (n *clusterNode) stop() {
	n.stdin.Close()
	select {
	case <-n.exited:
	case <-time.After(20 * time.Second):
		n.t.Errorf("node %s did not stop within 20s", n.name)
		n.kill()
	}
}

// send injects one message per recipient over c concurrent sessions.
func (n *clusterNode) send(rcpts []string, c int) {
	n.t.Helper()
	next := make(chan string, len(rcpts))
	for _, r := range rcpts {
		next <- r
	}
	close(next)
	var wg sync.WaitGroup
	errs := make(chan error, len(rcpts))
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for to := range next {
				if err := sendSMTP(n.smtp, "sender@penstock.test", []string{to}, message("sender@penstock.test", to, to, 1024)); err != nil {
					errs <- fmt.Errorf("node %s, %s: %w", n.name, to, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		n.t.Fatal(err)
	}
}

// explain asks the node's API why mail to domain waits.
func (n *clusterNode) explain(domain string) queue.Explanation {
	n.t.Helper()
	var ex queue.Explanation
	resp, err := http.Get("http://" + n.http + "/api/v1/explain?domain=" + domain)
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&ex); err != nil {
		n.t.Fatal(err)
	}
	return ex
}

// rcpts makes n addresses prefix<i>@domain.
func rcpts(prefix, domain string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d@%s", prefix, i, domain)
	}
	return out
}

// missing lists the addresses the provider never received.
func missing(st sim.Stats, want []string) []string {
	var out []string
	for _, r := range want {
		if st.RcptSeen[r] == 0 {
			out = append(out, r)
		}
	}
	return out
}
