package main

// penstock bench measures a node as it runs in production: SMTP injection,
// durable spool (fsync with group commit), delivery log on, flow control
// on, delivery over SMTP to a loopback sink.
//
// Three processes take part so that each one's CPU and memory are its own:
//
//   - this process runs Penstock (mta.New with production settings) and
//     measures its CPU, peak RSS, and the delivery log (Reception and
//     Delivery records give the per-message delivery latency);
//   - a child ("penstock bench _load", a re-exec of this binary) is the
//     outside world: the DNS server, the receiving sink (sim's, or none
//     when -sink names an external one such as Postfix's smtp-sink) and
//     the injecting clients, which reuse their connections;
//   - with -queued, children ("penstock bench _queued") hold a large
//     queue and time a restart.
//
// The two talk over the child's stdin and stdout, one JSON object a line.
// Every wait is bounded by -timeout.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/eventsout"
	"github.com/penstock-mta/penstock/mta"
	"github.com/penstock-mta/penstock/sim"
	"github.com/penstock-mta/penstock/smtpclient"
	"github.com/penstock-mta/penstock/spool"
)

const (
	benchSender     = "bench@sender.bench.test"
	benchRuleName   = "bench"
	benchRuleMX     = "*.sink.bench.test"
	benchQueuedRule = "*.held.bench.test"
	// benchSubBuf is the delivery-log subscription's buffer (records of
	// ~400 bytes: it counts in Penstock's RSS). The consumer drains it at
	// once; should records be dropped anyway, the queue's counters still
	// tell when everything is delivered.
	benchSubBuf = 4096
)

type benchFlags struct {
	n, size, clients, domains int
	sink                      string
	jsonOut                   bool
	timeout                   time.Duration
	maxConns, maxMsgs         int
	unsafeNoSync              bool
	campaign                  bool
	queued                    int
	cpuProfile, memProfile    string
	dir                       string
	extraRules                int  // rules tried (and missed) before the bench rule
	noShipped                 bool // without the shipped provider rules
	outputs                   benchOutputFlags
}

func cmdBench(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "_load":
			return benchLoadChild(args[1:], os.Stdin, stdout, stderr)
		case "_queued":
			return benchQueuedChild(args[1:], stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f benchFlags
	fs.IntVar(&f.n, "n", 20000, "messages to inject (one recipient each)")
	fs.IntVar(&f.size, "size", 2048, "message size in bytes, headers included")
	fs.IntVar(&f.clients, "clients", 20, "concurrent injecting SMTP sessions (each reuses its connection)")
	fs.IntVar(&f.domains, "domains", 1, "recipient domains, each with its own MX host (its own site), all on the one sink")
	fs.StringVar(&f.sink, "sink", "", "external sink HOST:PORT on loopback (e.g. Postfix's smtp-sink on 127.0.0.2:2525); default: sim's sink in a child process")
	fs.BoolVar(&f.jsonOut, "json", false, "print the results as one JSON object")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Minute, "give up after this long")
	fs.IntVar(&f.maxConns, "max-connections", 20, "max_connections of the bench MX rule (per site)")
	fs.IntVar(&f.maxMsgs, "max-messages", 1000, "max_messages_per_connection of the bench MX rule")
	fs.BoolVar(&f.unsafeNoSync, "unsafe-nosync", false, "UNSAFE: no fsync in the spool (acked mail can be lost); results are labelled unsafe")
	fs.BoolVar(&f.campaign, "campaign", false, "inject a campaign through POST /deliveries instead of SMTP (sim sink in this process)")
	fs.IntVar(&f.queued, "queued", 0, "instead of relaying: hold this many queued recipients (0-byte bodies), report RSS, restart and time until all are scheduled")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write Penstock's CPU profile over the measured run (with -queued: over the restart) to this file")
	fs.IntVar(&f.extraRules, "rules", 0, "this many extra MX rules, each with limits, tried (and missed) before the bench rule: the cost of rules in force")
	fs.BoolVar(&f.noShipped, "no-shipped-rules", false, "leave out the shipped provider rules")
	fs.StringVar(&f.dir, "dir", "", "directory for the spool and delivery log, kept and reused by later runs (default: a new temporary directory, removed after)")
	f.outputs.register(fs)
	fs.StringVar(&f.memProfile, "memprofile", "", "write Penstock's allocation profile (allocs) after the run to this file")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: penstock bench [flags]")
		fmt.Fprintln(stderr, "\nRelay throughput: SMTP in -> durable spool -> SMTP out to a loopback sink, production")
		fmt.Fprintln(stderr, "settings (fsync'd acks, delivery log, flow control). See BENCHMARKS.md.")
		fs.PrintDefaults()
	}
	if fs.Parse(args) != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "penstock bench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	switch {
	case f.n <= 0 || f.clients <= 0 || f.domains <= 0 || f.size < 256:
		fmt.Fprintln(stderr, "penstock bench: -n, -clients and -domains must be positive and -size at least 256")
		return 2
	case f.maxConns <= 0 || f.maxMsgs <= 0:
		fmt.Fprintln(stderr, "penstock bench: -max-connections and -max-messages must be positive")
		return 2
	case f.domains > 100000:
		fmt.Fprintln(stderr, "penstock bench: -domains is at most 100000")
		return 2
	}
	if f.sink != "" {
		if err := checkLoopback(f.sink); err != nil {
			fmt.Fprintln(stderr, "penstock bench: -sink:", err)
			return 2
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	if f.queued > 0 {
		return benchQueued(ctx, f, stdout, stderr)
	}
	if f.campaign {
		return benchCampaign(ctx, f, stdout, stderr)
	}
	res, err := benchRelay(ctx, f, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "penstock bench:", err)
		if res == nil {
			return 1
		}
	}
	if f.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(res)
	} else {
		res.print(stdout)
	}
	if err != nil || res.Delivered < int64(f.n) {
		return 1
	}
	return 0
}

// checkLoopback refuses any sink outside 127.0.0.0/8.
func checkLoopback(hostport string) error {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.Is4() || !netip.MustParsePrefix("127.0.0.0/8").Contains(ip) {
		return fmt.Errorf("%s: only an IPv4 address in 127.0.0.0/8 is allowed", hostport)
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		return fmt.Errorf("%s: bad port", hostport)
	}
	return nil
}

// ---------------------------------------------------------------- results

type benchMachine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	GoVersion string `json:"go_version"`
	Kernel    string `json:"kernel,omitempty"`
}

type benchRule struct {
	Name                     string `json:"name"`
	MX                       string `json:"mx"`
	Scope                    string `json:"scope"`
	MaxConnections           int    `json:"max_connections"`
	MaxMessagesPerConnection int    `json:"max_messages_per_connection"`
}

type benchResult struct {
	Date     string       `json:"date"`
	Machine  benchMachine `json:"machine"`
	Messages int          `json:"messages"`
	Size     int          `json:"size"`
	Clients  int          `json:"clients"`
	Domains  int          `json:"domains"`
	Sink     string       `json:"sink"`
	Rule     benchRule    `json:"rule"`
	// Unsafe is true when the spool did not fsync (-unsafe-nosync).
	Unsafe   bool   `json:"unsafe"`
	Settings string `json:"settings"`
	Dir      string `json:"dir"` // spool and delivery log

	EndToEndMsgsPerS float64 `json:"end_to_end_msgs_per_s"`
	EndToEndS        float64 `json:"end_to_end_s"`
	InjectMsgsPerS   float64 `json:"inject_msgs_per_s"`
	InjectS          float64 `json:"inject_s"`
	AckP50Ms         float64 `json:"inject_ack_p50_ms"`
	AckP99Ms         float64 `json:"inject_ack_p99_ms"`
	DeliveryP50Ms    float64 `json:"delivery_latency_p50_ms"`
	DeliveryP99Ms    float64 `json:"delivery_latency_p99_ms"`
	CPUS             float64 `json:"penstock_cpu_s"`
	CPUUsPerMsg      float64 `json:"penstock_cpu_us_per_msg"`
	PeakRSSMiB       float64 `json:"penstock_peak_rss_mib"`
	LoadCPUS         float64 `json:"load_cpu_s"` // the child: injector, sink (when sim's) and DNS
	MachineBusyPct   float64 `json:"machine_busy_pct"`
	// OtherCPUS is the CPU time the rest of the machine used meanwhile
	// (busy time of /proc/stat minus Penstock's and the child's; an
	// external sink counts here): other work on the machine makes every
	// figure above unreliable.
	OtherCPUS float64 `json:"other_processes_cpu_s"`

	Injected      int64   `json:"injected"`
	InjectErrors  int64   `json:"inject_errors"`
	FirstError    string  `json:"first_error,omitempty"`
	Delivered     int64   `json:"delivered"`
	Bounced       int64   `json:"bounced"`
	Deferred      int64   `json:"deferred"`
	SinkCounted   int64   `json:"sink_counted,omitempty"`
	SinkMaxConns  int     `json:"sink_max_connections,omitempty"`
	SinkMaxPerCon int     `json:"sink_max_msgs_per_connection,omitempty"`
	SpoolCommits  int64   `json:"spool_commits"`
	WritesPerCmt  float64 `json:"spool_writes_per_commit"`
	LogDropped    uint64  `json:"log_records_dropped,omitempty"`

	Outputs       string             `json:"event_outputs,omitempty"` // -webhook, -amqp, -nats, -postgres
	OutputsDrainS float64            `json:"event_outputs_drain_s,omitempty"`
	OutputStatus  []eventsout.Status `json:"event_outputs_status,omitempty"`
}

func (r *benchResult) print(w io.Writer) {
	label := ""
	if r.Unsafe {
		label = "  ** UNSAFE MODE: spool without fsync; not a valid result **"
	}
	fmt.Fprintf(w, "penstock bench  %s  (%d CPUs, %s, %s)%s\n", r.Date, r.Machine.CPUs, r.Machine.CPUModel, r.Machine.GoVersion, label)
	fmt.Fprintf(w, "  load: %d msgs x %d B, %d client sessions (connections reused), %d domain(s), sink %s\n",
		r.Messages, r.Size, r.Clients, r.Domains, r.Sink)
	fmt.Fprintf(w, "  rule: %q mx=%s scope=%s max_connections=%d max_messages_per_connection=%d (per site)\n",
		r.Rule.Name, r.Rule.MX, r.Rule.Scope, r.Rule.MaxConnections, r.Rule.MaxMessagesPerConnection)
	fmt.Fprintf(w, "  settings: %s; spool and log in %s\n", r.Settings, r.Dir)
	fmt.Fprintf(w, "end-to-end        %8.0f msgs/s   %.2f s, first injection -> last delivery at the sink\n", r.EndToEndMsgsPerS, r.EndToEndS)
	fmt.Fprintf(w, "injection         %8.0f msgs/s   %.2f s; ack latency p50 %.2f ms  p99 %.2f ms\n", r.InjectMsgsPerS, r.InjectS, r.AckP50Ms, r.AckP99Ms)
	fmt.Fprintf(w, "delivery latency  p50 %.1f ms  p99 %.1f ms  (reception -> remote 250)\n", r.DeliveryP50Ms, r.DeliveryP99Ms)
	fmt.Fprintf(w, "penstock          cpu %.2f s (%.0f us/msg)  peak RSS %.1f MiB\n", r.CPUS, r.CPUUsPerMsg, r.PeakRSSMiB)
	if strings.HasPrefix(r.Sink, "external") {
		fmt.Fprintf(w, "load generator    cpu %.2f s (injector + DNS, child process); machine busy %.0f%%; other processes cpu %.2f s (the external sink included)\n",
			r.LoadCPUS, r.MachineBusyPct, r.OtherCPUS)
	} else {
		fmt.Fprintf(w, "load generator    cpu %.2f s (injector + sink + DNS, child process); machine busy %.0f%%; other processes cpu %.2f s\n",
			r.LoadCPUS, r.MachineBusyPct, r.OtherCPUS)
	}
	fmt.Fprintf(w, "counts            injected %d (errors %d)  delivered %d  bounced %d  deferred %d",
		r.Injected, r.InjectErrors, r.Delivered, r.Bounced, r.Deferred)
	if r.SinkCounted > 0 {
		fmt.Fprintf(w, "  sink counted %d (max %d connections, max %d msgs/connection)", r.SinkCounted, r.SinkMaxConns, r.SinkMaxPerCon)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "spool             %d commits, %.1f writes/commit (group commit)\n", r.SpoolCommits, r.WritesPerCmt)
	if r.FirstError != "" {
		fmt.Fprintf(w, "first error       %s\n", r.FirstError)
	}
	if r.EndToEndS > 0 && r.OtherCPUS > 0.1*r.EndToEndS*float64(r.Machine.CPUs) && !strings.HasPrefix(r.Sink, "external") {
		fmt.Fprintf(w, "WARNING: other processes used %.0f%% of the machine during the run: the figures are unreliable\n",
			100*r.OtherCPUS/(r.EndToEndS*float64(r.Machine.CPUs)))
	}
	printBenchOutputs(w, r)
	if r.LogDropped > 0 {
		fmt.Fprintf(w, "note: the bench's log subscription dropped %d records; latencies use the rest\n", r.LogDropped)
	}
}

func machineInfo() benchMachine {
	m := benchMachine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// ---------------------------------------------------------- process stats

func cpuSelf() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procStatusKB reads a "VmXXX:  123 kB" line of /proc/self/status.
func procStatusKB(key string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// machineTicks returns busy and total jiffies of /proc/stat's cpu line.
func machineTicks() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0
	}
	var v [8]int64
	for i := range v {
		v[i], _ = strconv.ParseInt(f[i+1], 10, 64)
	}
	busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
	return busy, busy + v[3] + v[4]
}

func percentile(sorted []time.Duration, p int) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted) - 1) * p / 100
	return float64(sorted[i].Microseconds()) / 1000
}

// ------------------------------------------------------------ the parent

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

func benchRuleFor(f benchFlags, mx string) config.MXRule {
	r := config.MXRule{Name: benchRuleName, MX: config.Patterns{mx}, Scope: "source",
		MaxConnections: f.maxConns, MaxMessagesPerConnection: f.maxMsgs}
	r.ApplyDefaults()
	return r
}

// benchConfig is config.Default with the bench's addresses and one rule.
func benchConfig(dir, dnsAddr string, port int, rule config.MXRule) (*config.Config, error) {
	cfg := config.Default()
	cfg.Server.Hostname = "bench.penstock.test"
	cfg.Server.SpoolDir = filepath.Join(dir, "spool")
	cfg.Server.LogDir = filepath.Join(dir, "log")
	cfg.DNS.Nameservers = []string{dnsAddr}
	cfg.Delivery.Port = port
	cfg.SMTP.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.HTTP.Token = strconv.FormatInt(time.Now().UnixNano(), 36) // nobody calls the API; a token keeps it closed
	cfg.MXRules = []config.MXRule{rule}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// deliveryWatch follows the delivery log: reception times by message ID,
// delivery latencies, and the time the n-th final record was seen.
type deliveryWatch struct {
	mu        sync.Mutex
	received  map[string]time.Time
	latencies []time.Duration
	lastDeliv time.Time
	finals    int
	done      chan struct{}
	n         int
}

func (d *deliveryWatch) run(ch <-chan events.Record) {
	for r := range ch {
		d.mu.Lock()
		switch r.Type {
		case events.Reception:
			d.received[r.ID] = r.Time
		case events.Delivery, events.Bounce, events.Expiration:
			if r.Type == events.Delivery {
				if t0, ok := d.received[r.ID]; ok {
					d.latencies = append(d.latencies, r.Time.Sub(t0))
					delete(d.received, r.ID)
				}
				if r.Time.After(d.lastDeliv) {
					d.lastDeliv = r.Time
				}
			}
			d.finals++
			if d.finals == d.n {
				close(d.done)
			}
		}
		d.mu.Unlock()
	}
}

func benchRelay(ctx context.Context, f benchFlags, stderr io.Writer) (*benchResult, error) {
	res := &benchResult{
		Date: time.Now().UTC().Format(time.RFC3339), Machine: machineInfo(),
		Messages: f.n, Size: f.size, Clients: f.clients, Domains: f.domains, Unsafe: f.unsafeNoSync,
		Sink: "sim sink (child process)",
	}
	if f.sink != "" {
		res.Sink = "external " + f.sink
	}
	res.Settings = "durable spool (fsync before every 250, group commit), delivery log on, flow control on, shipped rules on"
	if f.unsafeNoSync {
		res.Settings = "UNSAFE: spool without fsync; delivery log on, flow control on"
	}
	args := []string{"_load", "-n", strconv.Itoa(f.n), "-size", strconv.Itoa(f.size),
		"-clients", strconv.Itoa(f.clients), "-domains", strconv.Itoa(f.domains)}
	if f.sink != "" {
		args = append(args, "-sink", f.sink)
	}
	ch, err := startChild(ctx, stderr, args...)
	if err != nil {
		return nil, err
	}
	defer ch.stop()
	var ready loadReady
	if err := ch.next(ctx, &ready); err != nil {
		return nil, err
	}
	if ready.Error != "" {
		return nil, errors.New(ready.Error)
	}

	dir := f.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "penstock-bench-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	res.Dir = dir
	rule := benchRuleFor(f, benchRuleMX)
	res.Rule = benchRule{Name: rule.Name, MX: benchRuleMX, Scope: rule.Scope, MaxConnections: rule.MaxConnections,
		MaxMessagesPerConnection: rule.MaxMessagesPerConnection}
	cfg, err := benchConfig(dir, ready.DNS, ready.Port, rule)
	if err != nil {
		return nil, err
	}
	if f.extraRules > 0 || f.noShipped {
		extra := make([]config.MXRule, 0, f.extraRules+1)
		for i := 0; i < f.extraRules; i++ {
			r := config.MXRule{Name: fmt.Sprintf("extra-%d", i), MX: config.Patterns{fmt.Sprintf("mx?.unused-%d.*.example", i)},
				MaxConnections: 5, MaxMessagesPerConnection: 50, MessagesPerHour: 3600}
			r.ApplyDefaults()
			extra = append(extra, r)
		}
		cfg.MXRules = append(extra, cfg.MXRules...)
		cfg.Server.UseShippedRules = !f.noShipped
		res.Settings += fmt.Sprintf("; %d extra rules before the bench rule, shipped rules %v", f.extraRules, !f.noShipped)
	}
	if f.outputs.any() {
		names, stop, err := f.outputs.apply(cfg)
		defer stop()
		if err != nil {
			return nil, err
		}
		res.Outputs = names
		res.Settings += "; event outputs " + names
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	m, err := mta.New(cfg, mta.Options{Logger: logger, NoSync: f.unsafeNoSync})
	if err != nil {
		return nil, err
	}
	if n := m.Spool.Stats().Messages; n > 0 {
		m.Shutdown(ctx)
		return nil, fmt.Errorf("the spool in %s holds %d messages from an earlier run: remove it or use another -dir", dir, n)
	}
	if err := m.Start(ctx); err != nil {
		m.Shutdown(ctx)
		return nil, err
	}
	stopped := false
	shutdown := func() {
		if stopped {
			return
		}
		stopped = true
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Shutdown(sctx); err != nil {
			fmt.Fprintln(stderr, "penstock bench: shutdown:", err)
		}
	}
	defer shutdown()

	sub, unsub := m.Log.Subscribe(benchSubBuf)
	watch := &deliveryWatch{received: make(map[string]time.Time, f.n), latencies: make([]time.Duration, 0, f.n),
		done: make(chan struct{}), n: f.n}
	watchDone := make(chan struct{})
	go func() { watch.run(sub); close(watchDone) }()
	defer func() { unsub(); <-watchDone }()

	if f.cpuProfile != "" {
		pf, err := os.Create(f.cpuProfile)
		if err != nil {
			return nil, err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	st0 := m.Spool.Stats()
	cpu0 := cpuSelf()
	busy0, total0 := machineTicks()
	if err := ch.send(loadGo{Addr: m.SMTPAddr()}); err != nil {
		return nil, fmt.Errorf("talking to the bench child: %w", err)
	}

	// The child answers once it has injected everything and, with sim's
	// sink, once the sink has counted every message. Deliveries are also
	// followed in the log: with an external sink they are all we see.
	var lr loadResult
	childErr := make(chan error, 1)
	go func() { childErr <- ch.next(ctx, &lr) }()
	var waitErr error
	var countersDone time.Time // when the queue's counters showed every message final
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	gotChild, gotAll := false, false
	for !(gotChild && gotAll) && waitErr == nil {
		select {
		case <-poll.C:
			// The fallback for records the subscription dropped.
			t := m.Queue.Totals()
			watch.mu.Lock()
			n := watch.n
			watch.mu.Unlock()
			if t.Delivered+t.Bounced+t.Expired >= int64(n) && !gotAll {
				gotAll, countersDone = true, time.Now()
			}
		case err := <-childErr:
			gotChild = true
			if err != nil {
				waitErr = err
			} else if lr.Injected < int64(f.n) {
				// Not everything was accepted: the deliveries can never
				// reach n; what is queued gets a short grace.
				watch.mu.Lock()
				watch.n = int(lr.Injected)
				if watch.finals >= watch.n && !gotAll {
					gotAll = true
				}
				watch.mu.Unlock()
				if !gotAll {
					select {
					case <-watch.done:
					case <-time.After(10 * time.Second):
					case <-ctx.Done():
					}
					gotAll = true
				}
			}
		case <-watch.done:
			gotAll = true
		case <-ctx.Done():
			waitErr = fmt.Errorf("timed out after %s: %d of %d delivered", f.timeout, m.Queue.Totals().Delivered, f.n)
		}
	}
	cpu := cpuSelf() - cpu0
	busy1, total1 := machineTicks()
	st1 := m.Spool.Stats()
	res.PeakRSSMiB = float64(procStatusKB("VmHWM")) / 1024
	if f.cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	if f.memProfile != "" {
		if err := writeAllocs(f.memProfile); err != nil {
			fmt.Fprintln(stderr, "penstock bench: -memprofile:", err)
		}
	}
	tot := m.Queue.Totals()
	if res.Outputs != "" {
		m.Log.Flush()
		drain, st := benchDrain(ctx, m.EventsOutStatus, time.Minute)
		res.OutputsDrainS, res.OutputStatus = drain.Seconds(), st
	}
	shutdown()

	res.CPUS = cpu.Seconds()
	res.Delivered, res.Bounced, res.Deferred = tot.Delivered, tot.Bounced, tot.Deferred
	if tot.Delivered > 0 {
		res.CPUUsPerMsg = float64(cpu.Microseconds()) / float64(tot.Delivered)
	}
	if total1 > total0 {
		res.MachineBusyPct = 100 * float64(busy1-busy0) / float64(total1-total0)
	}
	// /proc/stat counts in USER_HZ, 100 per second on Linux.
	res.OtherCPUS = max(0, float64(busy1-busy0)/100-cpu.Seconds()-time.Duration(lr.CPUNs).Seconds())
	res.SpoolCommits = st1.Commits - st0.Commits
	if res.SpoolCommits > 0 {
		res.WritesPerCmt = float64(st1.Writes-st0.Writes) / float64(res.SpoolCommits)
	}
	res.LogDropped = m.Log.Dropped()
	res.Injected, res.InjectErrors, res.FirstError = lr.Injected, lr.Errors, lr.FirstError
	res.AckP50Ms, res.AckP99Ms = lr.AckP50Ms, lr.AckP99Ms
	res.LoadCPUS = time.Duration(lr.CPUNs).Seconds()
	res.SinkCounted, res.SinkMaxConns, res.SinkMaxPerCon = lr.SinkCounted, lr.SinkMaxConns, lr.SinkMaxPerCon
	if lr.InjectEnd > lr.InjectStart {
		res.InjectS = time.Duration(lr.InjectEnd - lr.InjectStart).Seconds()
		res.InjectMsgsPerS = float64(lr.Injected) / res.InjectS
	}
	watch.mu.Lock()
	lat := slices.Clone(watch.latencies)
	last := watch.lastDeliv
	watch.mu.Unlock()
	slices.Sort(lat)
	res.DeliveryP50Ms, res.DeliveryP99Ms = percentile(lat, 50), percentile(lat, 99)
	end := last.UnixNano()
	if res.LogDropped > 0 && !countersDone.IsZero() {
		end = countersDone.UnixNano() // the last Delivery record may be among the dropped
	}
	delivered := res.Delivered
	if f.sink == "" && lr.SinkLast > 0 {
		// sim's sink timestamps each message as it accepts it.
		end, delivered = lr.SinkLast, lr.SinkCounted
	}
	if end > lr.InjectStart && lr.InjectStart > 0 {
		res.EndToEndS = time.Duration(end - lr.InjectStart).Seconds()
		res.EndToEndMsgsPerS = float64(delivered) / res.EndToEndS
	}
	if waitErr == nil && lr.SinkWaitError != "" {
		waitErr = errors.New(lr.SinkWaitError)
	}
	return res, waitErr
}

func writeAllocs(path string) error {
	pf, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(pf, 0); err != nil {
		pf.Close()
		return err
	}
	return pf.Close()
}

// -------------------------------------------------------------- the child

func benchDomain(i int) string { return "d" + strconv.Itoa(i) + ".bench.test" }
func benchMX(i int) string     { return "mx" + strconv.Itoa(i) + ".sink.bench.test" }

// benchBody builds message i: headers, then lines of text up to size bytes.
func benchBody(i int, to string, size int, filler []byte) []byte {
	b := make([]byte, 0, size+2)
	b = fmt.Appendf(b, "From: Bench <%s>\r\nTo: <%s>\r\nSubject: penstock bench %d\r\nMessage-ID: <%d.bench@sender.bench.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
		benchSender, to, i, i)
	for len(b) < size-2 {
		n := min(len(filler), size-2-len(b))
		b = append(b, filler[:n]...)
		if b[len(b)-1] != '\n' {
			b = append(b, "\r\n"...)
		}
	}
	return b
}

func benchLoadChild(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench _load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 20000, "")
	size := fs.Int("size", 2048, "")
	clients := fs.Int("clients", 20, "")
	domains := fs.Int("domains", 1, "")
	sinkAddr := fs.String("sink", "", "")
	if fs.Parse(args) != nil {
		return 2
	}
	out := json.NewEncoder(stdout)
	failReady := func(err error) int {
		out.Encode(loadReady{Error: err.Error()})
		return 1
	}
	world, err := sim.NewWorld()
	if err != nil {
		return failReady(err)
	}
	defer world.Close()
	var sink *sim.Provider
	port := world.Port
	sinkIP := ""
	if *sinkAddr == "" {
		sink, err = world.AddProvider(sim.Behavior{Name: "sink"}, []string{benchDomain(0)}, benchMX(0))
		if err != nil {
			return failReady(err)
		}
		sinkIP, _, _ = net.SplitHostPort(sink.Addrs()[0])
	} else {
		host, p, _ := net.SplitHostPort(*sinkAddr)
		sinkIP = host
		port, _ = strconv.Atoi(p)
	}
	// Every domain has its own MX host name (its own site in Penstock),
	// all of them on the one sink address.
	for i := range *domains {
		world.DNS.SetA(benchMX(i), sinkIP)
		world.DNS.SetMX(benchDomain(i), sim.MXRecord{Host: benchMX(i), Pref: 10})
	}
	if err := out.Encode(loadReady{DNS: world.Nameserver(), Port: port}); err != nil {
		return 1
	}

	in := bufio.NewScanner(stdin)
	if !in.Scan() {
		return 0 // the parent gave up before starting
	}
	var cmd loadGo
	if err := json.Unmarshal(in.Bytes(), &cmd); err != nil {
		fmt.Fprintln(stderr, "bench child:", err)
		return 1
	}
	cpu0 := cpuSelf()
	res := benchInject(cmd.Addr, *n, *size, *clients, *domains)
	if sink != nil {
		// The parent's -timeout bounds the whole run; this bounds the child
		// on its own, should the parent vanish.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		werr := sink.WaitMessages(ctx, res.Injected)
		cancel()
		if werr != nil {
			res.SinkWaitError = werr.Error()
		}
		st := sink.Stats()
		res.SinkCounted = st.Delivered
		res.SinkMaxConns = st.MaxOpen
		res.SinkMaxPerCon = st.MaxMsgsPerConn
		if len(st.Arrivals) > 0 {
			res.SinkFirst = slices.MinFunc(st.Arrivals, time.Time.Compare).UnixNano()
			res.SinkLast = slices.MaxFunc(st.Arrivals, time.Time.Compare).UnixNano()
		}
	}
	res.CPUNs = int64(cpuSelf() - cpu0)
	if err := out.Encode(res); err != nil {
		return 1
	}
	// Stay up (the sink keeps answering) until the parent closes stdin,
	// at most 30 minutes.
	eof := make(chan struct{})
	go func() {
		for in.Scan() {
		}
		close(eof)
	}()
	select {
	case <-eof:
	case <-time.After(30 * time.Minute):
	}
	return 0
}

// benchInject sends n messages to addr over c sessions, each reusing its
// connection; message i goes to user<i>@d<i mod domains>.
func benchInject(addr string, n, size, c, domains int) loadResult {
	filler := []byte(strings.Repeat("Penstock meters mail like water to a turbine, gate by gate. ", 2)[:76] + "\r\n")
	lat := make([]time.Duration, n)
	var next, injected, errs atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) {
		errs.Add(1)
		firstErr.CompareAndSwap(nil, err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for range c {
		wg.Go(func() {
			var cl *smtpclient.Client
			defer func() {
				if cl != nil {
					qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
					cl.Quit(qctx)
					qcancel()
				}
			}()
			for tries := 0; tries < n+c; tries++ {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				to := "user" + strconv.Itoa(i) + "@" + benchDomain(i%domains)
				body := benchBody(i, to, size, filler)
				if cl == nil || cl.Broken() {
					var err error
					if cl, err = smtpclient.Dial(ctx, addr, smtpclient.Options{EHLO: "injector.bench.test", TLS: smtpclient.TLSDisabled}); err != nil {
						cl = nil
						fail(err)
						continue
					}
				}
				t0 := time.Now()
				if _, err := cl.Send(ctx, benchSender, []string{to}, body); err != nil {
					fail(err)
					continue
				}
				lat[i] = time.Since(t0)
				injected.Add(1)
			}
		})
	}
	wg.Wait()
	end := time.Now()
	ok := make([]time.Duration, 0, n)
	for _, d := range lat {
		if d > 0 {
			ok = append(ok, d)
		}
	}
	slices.Sort(ok)
	r := loadResult{InjectStart: start.UnixNano(), InjectEnd: end.UnixNano(), Injected: injected.Load(), Errors: errs.Load(),
		AckP50Ms: percentile(ok, 50), AckP99Ms: percentile(ok, 99)}
	if e, ok := firstErr.Load().(string); ok {
		r.FirstError = e
	}
	return r
}

// ------------------------------------------------------------ -queued N

// queuedReport is what a _queued child prints when the queue is ready.
type queuedReport struct {
	Phase        string  `json:"phase"`
	Recipients   int     `json:"recipients"`
	Sites        int     `json:"sites"`
	OpenS        float64 `json:"open_s"`      // mta.New: spool open (counts records), resolver, rules
	LoadS        float64 `json:"load_s"`      // Start: spool Load + Enqueue (ingest: PutMany + EnqueueAll)
	LoadedS      float64 `json:"loaded_s"`    // restart: from process start until Start returned (every recipient in the queue, some domains maybe still resolving)
	ScheduledS   float64 `json:"scheduled_s"` // until every recipient sits in its site's heap (every MX answer in)
	DNSQueries   int64   `json:"dns_queries"` // queries the DNS server answered (more than the domains: lookups were retried)
	RSSMiB       float64 `json:"rss_mib"`
	PeakRSSMiB   float64 `json:"peak_rss_mib"`
	HeapMiB      float64 `json:"go_heap_inuse_mib"`
	SpoolFileMiB float64 `json:"spool_file_mib"`
	CPUS         float64 `json:"cpu_s"`
	Error        string  `json:"error,omitempty"`
}

type queuedResult struct {
	Date       string       `json:"date"`
	Machine    benchMachine `json:"machine"`
	Recipients int          `json:"recipients"`
	Domains    int          `json:"domains"`
	Note       string       `json:"note"`
	Ingest     queuedReport `json:"ingest"`
	Restart    queuedReport `json:"restart"`
	// RestartReadyS is wall time from starting the restarted process to
	// every recipient scheduled, exec and runtime start included.
	RestartReadyS float64 `json:"restart_ready_s"`
}

func benchQueued(ctx context.Context, f benchFlags, stdout, stderr io.Writer) int {
	dir, err := os.MkdirTemp("", "penstock-bench-queued-")
	if err != nil {
		return fail(stderr, err)
	}
	defer os.RemoveAll(dir)
	res := queuedResult{Date: time.Now().UTC().Format(time.RFC3339), Machine: machineInfo(), Recipients: f.queued, Domains: f.domains,
		Note: "single-recipient messages with 0-byte bodies (a memory/restart measurement: nothing is sent), " +
			"due in 30-60 min (retry scheduled), so sites are held without traffic"}
	run := func(phase string, rep *queuedReport) (time.Duration, error) {
		t0 := time.Now()
		args := []string{"_queued", "-phase", phase, "-dir", dir, "-n", strconv.Itoa(f.queued),
			"-domains", strconv.Itoa(f.domains), "-t0", strconv.FormatInt(t0.UnixNano(), 10)}
		if phase == "restart" && f.cpuProfile != "" {
			args = append(args, "-cpuprofile", f.cpuProfile)
		}
		ch, err := startChild(ctx, stderr, args...)
		if err != nil {
			return 0, err
		}
		defer ch.stop()
		if err := ch.next(ctx, rep); err != nil {
			return 0, err
		}
		took := time.Since(t0)
		if rep.Error != "" {
			return took, errors.New(rep.Error)
		}
		return took, nil
	}
	fmt.Fprintf(stderr, "penstock bench: queueing %d recipients over %d domains...\n", f.queued, f.domains)
	if _, err := run("ingest", &res.Ingest); err != nil {
		return fail(stderr, fmt.Errorf("ingest: %w", err))
	}
	fmt.Fprintln(stderr, "penstock bench: restarting on that spool...")
	took, err := run("restart", &res.Restart)
	if err != nil {
		return fail(stderr, fmt.Errorf("restart: %w", err))
	}
	res.RestartReadyS = took.Seconds()
	if f.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(res)
		return 0
	}
	fmt.Fprintf(stdout, "penstock bench -queued  %s  (%d CPUs, %s, %s)\n", res.Date, res.Machine.CPUs, res.Machine.CPUModel, res.Machine.GoVersion)
	fmt.Fprintf(stdout, "  %d queued recipients over %d domains (%d sites); %s\n", f.queued, f.domains, res.Restart.Sites, res.Note)
	for _, r := range []queuedReport{res.Ingest, res.Restart} {
		fmt.Fprintf(stdout, "%-8s open %.2f s  load %.2f s  all scheduled at %.2f s  RSS %.0f MiB (peak %.0f MiB)  Go heap %.0f MiB  spool file %.0f MiB  cpu %.1f s  DNS queries %d\n",
			r.Phase, r.OpenS, r.LoadS, r.ScheduledS, r.RSSMiB, r.PeakRSSMiB, r.HeapMiB, r.SpoolFileMiB, r.CPUS, r.DNSQueries)
	}
	fmt.Fprintf(stdout, "restart: every recipient loaded into the queue %.2f s after the process was started; every one on its site (all MX answers in) at %.2f s (target < 10 s); peak RSS %.0f MiB (target < 1024)\n",
		res.Restart.LoadedS, res.RestartReadyS, res.Restart.PeakRSSMiB)
	if res.RestartReadyS > res.Restart.LoadedS+5 {
		fmt.Fprintln(stdout, "note: recipients waited for MX answers long after loading: lookups lost in the startup burst are retried a minute later (see the LOCAL PROBLEM line above and BENCHMARKS.md)")
	}
	return 0
}

func benchQueuedChild(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench _queued", flag.ContinueOnError)
	fs.SetOutput(stderr)
	phase := fs.String("phase", "ingest", "")
	dir := fs.String("dir", "", "")
	n := fs.Int("n", 0, "")
	domains := fs.Int("domains", 1, "")
	t0ns := fs.Int64("t0", 0, "")
	cpuProfile := fs.String("cpuprofile", "", "")
	if fs.Parse(args) != nil || *dir == "" || *n <= 0 {
		return 2
	}
	if *cpuProfile != "" {
		pf, err := os.Create(*cpuProfile)
		if err != nil {
			return fail(stderr, err)
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return fail(stderr, err)
		}
		defer pprof.StopCPUProfile()
	}
	t0 := time.Unix(0, *t0ns)
	rep := queuedReport{Phase: *phase, Recipients: *n}
	out := json.NewEncoder(stdout)
	failRep := func(err error) int {
		rep.Error = err.Error()
		out.Encode(rep)
		return 1
	}
	dnsSrv, err := sim.NewDNSServer("127.0.0.1:0")
	if err != nil {
		return failRep(err)
	}
	defer dnsSrv.Close()
	for i := range *domains {
		h := "mx" + strconv.Itoa(i) + ".held.bench.test"
		dnsSrv.SetA(h, "127.0.0.1")
		dnsSrv.SetMX(benchDomain(i), sim.MXRecord{Host: h, Pref: 10})
	}
	f := benchFlags{maxConns: 20, maxMsgs: 1000}
	cfg, err := benchConfig(*dir, dnsSrv.Addr(), 9, benchRuleFor(f, benchQueuedRule))
	if err != nil {
		return failRep(err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	tNew := time.Now()
	m, err := mta.New(cfg, mta.Options{Logger: logger})
	if err != nil {
		return failRep(err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		m.Shutdown(sctx)
		cancel()
	}()
	tStart := time.Now()
	rep.OpenS = tStart.Sub(tNew).Seconds()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		return failRep(err)
	}
	if *phase == "ingest" {
		if err := benchFill(ctx, m, *n, *domains); err != nil {
			return failRep(err)
		}
	}
	rep.LoadS = time.Since(tStart).Seconds()
	rep.LoadedS = time.Since(t0).Seconds()
	// Wait (bounded, polled: the queue has no "all scheduled" event) until
	// every recipient is on its site: all domains resolved, none pending.
	// Queue.Totals walks every queued job, so it is asked only once the DNS
	// server has answered for every domain, and then every 100 ms.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for dnsSrv.Queries() < int64(*domains) {
		select {
		case <-ctx.Done():
			return failRep(fmt.Errorf("MX lookups not answered in time: %d of %d", dnsSrv.Queries(), *domains))
		case <-tick.C:
		}
	}
	tick.Reset(100 * time.Millisecond)
	for {
		t := m.Queue.Totals()
		if t.Queued >= *n && t.Sites >= *domains {
			rep.Sites = t.Sites
			break
		}
		select {
		case <-ctx.Done():
			return failRep(fmt.Errorf("not scheduled in time: %d of %d queued on %d sites", t.Queued, *n, t.Sites))
		case <-tick.C:
		}
	}
	if *phase == "ingest" {
		rep.ScheduledS = time.Since(tStart).Seconds()
	} else {
		rep.ScheduledS = time.Since(t0).Seconds()
	}
	rep.RSSMiB = float64(procStatusKB("VmRSS")) / 1024
	rep.PeakRSSMiB = float64(procStatusKB("VmHWM")) / 1024
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rep.HeapMiB = float64(ms.HeapInuse) / (1 << 20)
	rep.SpoolFileMiB = float64(m.Spool.Stats().Bytes) / (1 << 20)
	rep.CPUS = cpuSelf().Seconds()
	rep.DNSQueries = dnsSrv.Queries()
	if err := out.Encode(rep); err != nil {
		return 1
	}
	return 0
}

// benchFill queues n single-recipient messages as a campaign ingestion
// would: PutMany in batches of 10,000, then Enqueue. Bodies are empty and
// due times are 30-60 minutes ahead (held, nothing is sent).
func benchFill(ctx context.Context, m *mta.MTA, n, domains int) error {
	const batch = 10000
	now := time.Now()
	for done := 0; done < n; {
		k := min(batch, n-done)
		ms := make([]*spool.Message, k)
		for j := range ms {
			i := done + j
			ms[j] = &spool.Message{
				Sender: benchSender, Received: now, Expires: now.Add(5 * 24 * time.Hour),
				Recipients: []spool.Recipient{{
					Addr:        "user" + strconv.Itoa(i) + "@" + benchDomain(i%domains),
					NextAttempt: now.Add(30*time.Minute + time.Duration(i%1800)*time.Second),
				}},
			}
		}
		if err := m.Spool.PutMany(ctx, ms, nil); err != nil {
			return err
		}
		m.Queue.EnqueueAll(ms)
		done += k
	}
	return nil
}
