package main

// The parent role of penstock bench: run Penstock with production
// settings against the child's world and measure it.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/dkim"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/mta"
)

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

func (d *deliveryWatch) run(ch <-chan *events.Record) {
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
		Sink: "sim sink (child process)", Load: f.load,
	}
	if f.load == "zipf" {
		spread, err := benchSpread(f.load, f.n, f.domains)
		if err != nil {
			return nil, err
		}
		top10, used := spreadSummary(spread, f.domains)
		res.Load = fmt.Sprintf("zipf (top 10 domains %.1f%%, %d domains used)", 100*top10, used)
	}
	if f.sink != "" {
		res.Sink = "external " + f.sink
	}
	res.Settings = "durable spool (fsync before every 250, group commit), delivery log on, flow control on, shipped rules on"
	if f.unsafeNoSync {
		res.Settings = "UNSAFE: spool without fsync; delivery log on, flow control on"
	}
	args := []string{"_load", "-n", strconv.Itoa(f.n), "-size", strconv.Itoa(f.size),
		"-clients", strconv.Itoa(f.clients), "-domains", strconv.Itoa(f.domains), "-load", f.load}
	if f.sink != "" {
		args = append(args, "-sink", f.sink)
	}
	if f.sinkSessions > 0 {
		args = append(args, "-sink-sessions", strconv.Itoa(f.sinkSessions))
		res.Sink += fmt.Sprintf(", at most %d sessions at once", f.sinkSessions)
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
	if err := benchDKIM(cfg, dir, f.dkim); err != nil {
		return nil, err
	}
	if f.dkim != "none" {
		res.Settings += "; DKIM signing " + f.dkim
		if f.dkim != "ed25519" {
			res.Settings += " (RSA by " + dkim.RSAImplementation() + ")"
		}
	}
	res.DKIM = f.dkim
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
	var recv0 map[string]time.Duration
	if res.Outputs != "" {
		recv0 = receiverCPU()
	}
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
	for _, n := range m.Queue.ConnectionsOpened() {
		res.Opened += n
	}
	res.Shared = m.Queue.SessionsShared()
	if res.Outputs != "" {
		m.Log.Flush()
		drain, st := benchDrain(ctx, m.EventsOutStatus, time.Minute)
		res.OutputsDrainS, res.OutputStatus = drain.Seconds(), st
		res.ReceiversCPUS = receiverDelta(recv0, receiverCPU())
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
	res.SinkConns, res.SinkWaited, res.SinkChunked = lr.SinkConns, lr.SinkWaited, lr.SinkChunked
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

// benchDKIM makes keys of the kind asked for in dir/dkim and configures
// them for the bench's From domain. Nothing is published: signing needs no
// DNS, and the sink does not verify.
func benchDKIM(cfg *config.Config, dir, kind string) error {
	var types []string
	switch kind {
	case "none":
		return nil
	case "rsa", "ed25519":
		types = []string{kind}
	case "dual":
		types = []string{"rsa", "ed25519"}
	default:
		return fmt.Errorf("-dkim %q: want none, rsa, ed25519 or dual", kind)
	}
	kdir := filepath.Join(dir, "dkim")
	if err := os.MkdirAll(kdir, 0o700); err != nil {
		return err
	}
	_, domain, _ := strings.Cut(benchSender, "@")
	for _, typ := range types {
		_, pemData, err := dkim.GenerateKey(typ, 2048)
		if err != nil {
			return err
		}
		file := filepath.Join(kdir, "bench-"+typ+".pem")
		if err := os.WriteFile(file, pemData, 0o600); err != nil {
			return err
		}
		k := config.DKIM{Domain: domain, Selector: "bench-" + typ, KeyFile: file}
		k.ApplyDefaults()
		cfg.DKIM = append(cfg.DKIM, k)
	}
	return cfg.Validate()
}
