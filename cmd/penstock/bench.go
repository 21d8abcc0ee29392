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
//
// Files by role: bench.go (flags, results), bench_relay.go (this process),
// bench_load.go (the _load child), bench_queued.go (-queued and its
// children), bench_child.go (the pipe to a child), bench_stats.go
// (process statistics), bench_campaign.go (-campaign).

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/penstock-mta/penstock/eventsout"
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
	load                      string // how recipients spread over the domains: uniform or zipf
	sink                      string
	jsonOut                   bool
	timeout                   time.Duration
	maxConns, maxMsgs         int
	sinkSessions              int // sim sink: sessions served at once (0: no limit)
	unsafeNoSync              bool
	campaign                  bool
	queued                    int
	cpuProfile, memProfile    string
	dir                       string
	extraRules                int    // rules tried (and missed) before the bench rule
	noShipped                 bool   // without the shipped provider rules
	dkim                      string // none, rsa, ed25519 or dual: keys for the From domain
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
	fs.StringVar(&f.load, "load", "uniform", "how recipients spread over -domains: uniform (round robin) or zipf (a campaign: every domain once, then Zipf-distributed, the top 10 domains ~70%, fixed seed)")
	fs.StringVar(&f.sink, "sink", "", "external sink HOST:PORT on loopback (e.g. Postfix's smtp-sink on 127.0.0.2:2525); default: sim's sink in a child process")
	fs.BoolVar(&f.jsonOut, "json", false, "print the results as one JSON object")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Minute, "give up after this long")
	fs.IntVar(&f.maxConns, "max-connections", 20, "max_connections of the bench MX rule (per site)")
	fs.IntVar(&f.maxMsgs, "max-messages", 1000, "max_messages_per_connection of the bench MX rule")
	fs.IntVar(&f.sinkSessions, "sink-sessions", 0, "sim sink: serve at most this many sessions at once, the rest wait without a greeting (as Postfix's smtp-sink -m, default 256, does); 0: no limit")
	fs.BoolVar(&f.unsafeNoSync, "unsafe-nosync", false, "UNSAFE: no fsync in the spool (acked mail can be lost); results are labelled unsafe")
	fs.BoolVar(&f.campaign, "campaign", false, "inject a campaign through POST /deliveries instead of SMTP (sim sink in this process)")
	fs.IntVar(&f.queued, "queued", 0, "instead of relaying: hold this many queued recipients (0-byte bodies), report RSS, restart and time until all are scheduled")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write Penstock's CPU profile over the measured run (with -queued: over the restart) to this file")
	fs.IntVar(&f.extraRules, "rules", 0, "this many extra MX rules, each with limits, tried (and missed) before the bench rule: the cost of rules in force")
	fs.BoolVar(&f.noShipped, "no-shipped-rules", false, "leave out the shipped provider rules")
	fs.StringVar(&f.dir, "dir", "", "directory for the spool and delivery log, kept and reused by later runs (default: a new temporary directory, removed after)")
	f.outputs.register(fs)
	fs.StringVar(&f.memProfile, "memprofile", "", "write Penstock's allocation profile (allocs) after the run to this file")
	fs.StringVar(&f.dkim, "dkim", "none", "DKIM-sign every message for the From domain: none, rsa (2048 bits), ed25519 or dual (both); keys are made in the bench's directory, nothing is published")
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
	case f.sinkSessions < 0 || (f.sinkSessions > 0 && f.sink != ""):
		fmt.Fprintln(stderr, "penstock bench: -sink-sessions must not be negative, and is for the sim sink (not with -sink)")
		return 2
	case f.maxConns <= 0 || f.maxMsgs <= 0:
		fmt.Fprintln(stderr, "penstock bench: -max-connections and -max-messages must be positive")
		return 2
	case f.domains > 100000:
		fmt.Fprintln(stderr, "penstock bench: -domains is at most 100000")
		return 2
	case f.load != "uniform" && f.load != "zipf":
		fmt.Fprintf(stderr, "penstock bench: -load %q: want uniform or zipf\n", f.load)
		return 2
	case f.load != "uniform" && (f.campaign || f.queued > 0):
		fmt.Fprintln(stderr, "penstock bench: -load applies to the relay bench, not to -campaign or -queued")
		return 2
	case !slices.Contains([]string{"none", "rsa", "ed25519", "dual"}, f.dkim):
		fmt.Fprintf(stderr, "penstock bench: -dkim %q: want none, rsa, ed25519 or dual\n", f.dkim)
		return 2
	case f.dkim != "none" && f.queued > 0:
		fmt.Fprintln(stderr, "penstock bench: -dkim applies to the relay bench, not to -queued")
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
	Load     string       `json:"load"` // uniform, or zipf with its top-10 share
	Sink     string       `json:"sink"`
	Rule     benchRule    `json:"rule"`
	// Unsafe is true when the spool did not fsync (-unsafe-nosync).
	Unsafe   bool   `json:"unsafe"`
	Settings string `json:"settings"`
	Dir      string `json:"dir"`  // spool and delivery log
	DKIM     string `json:"dkim"` // none, rsa, ed25519 or dual

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
	Opened        uint64  `json:"connections_opened"` // by Penstock, whatever the sink
	Shared        uint64  `json:"sessions_shared"`    // jobs an idle connection took from another site
	SinkCounted   int64   `json:"sink_counted,omitempty"`
	SinkMaxConns  int     `json:"sink_max_connections,omitempty"`
	SinkConns     int64   `json:"sink_connections,omitempty"` // accepted in all
	SinkWaited    int64   `json:"sink_waited,omitempty"`      // of those, waited for a session (-sink-sessions)
	SinkChunked   int64   `json:"sink_chunked,omitempty"`     // messages the sink got by BDAT (CHUNKING)
	SinkMaxPerCon int     `json:"sink_max_msgs_per_connection,omitempty"`
	SpoolCommits  int64   `json:"spool_commits"`
	WritesPerCmt  float64 `json:"spool_writes_per_commit"`
	LogDropped    uint64  `json:"log_records_dropped,omitempty"`

	Outputs       string             `json:"event_outputs,omitempty"` // -webhook, -amqp, -nats, -postgres
	OutputsDrainS float64            `json:"event_outputs_drain_s,omitempty"`
	OutputStatus  []eventsout.Status `json:"event_outputs_status,omitempty"`
	// ReceiversCPUS is the CPU seconds each local receiver process
	// (beam.smp, nats-server, postgres) used from the start of the run to
	// the outputs' catching up: all their clients' work, not only ours.
	ReceiversCPUS map[string]float64 `json:"receivers_cpu_s,omitempty"`
}

func (r *benchResult) print(w io.Writer) {
	label := ""
	if r.Unsafe {
		label = "  ** UNSAFE MODE: spool without fsync; not a valid result **"
	}
	fmt.Fprintf(w, "penstock bench  %s  (%d CPUs, %s, %s)%s\n", r.Date, r.Machine.CPUs, r.Machine.CPUModel, r.Machine.GoVersion, label)
	fmt.Fprintf(w, "  load: %d msgs x %d B, %d client sessions (connections reused), %d domain(s) %s, sink %s\n",
		r.Messages, r.Size, r.Clients, r.Domains, r.Load, r.Sink)
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
	fmt.Fprintf(w, "counts            injected %d (errors %d)  delivered %d  bounced %d  deferred %d  connections opened %d  sessions shared %d",
		r.Injected, r.InjectErrors, r.Delivered, r.Bounced, r.Deferred, r.Opened, r.Shared)
	if r.SinkCounted > 0 {
		fmt.Fprintf(w, "  sink counted %d (%d connections, max %d at once, max %d msgs/connection", r.SinkCounted, r.SinkConns, r.SinkMaxConns, r.SinkMaxPerCon)
		if r.SinkWaited > 0 {
			fmt.Fprintf(w, ", %d waited for a session", r.SinkWaited)
		}
		if r.SinkChunked > 0 {
			fmt.Fprintf(w, ", %d by BDAT", r.SinkChunked)
		}
		fmt.Fprint(w, ")")
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
