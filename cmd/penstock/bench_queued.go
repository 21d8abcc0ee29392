package main

// The -queued role of penstock bench ("_queued" children): hold a large
// queue, measure its memory, and time a restart.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/penstock-mta/penstock/mta"
	"github.com/penstock-mta/penstock/sim"
	"github.com/penstock-mta/penstock/spool"
)

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
	RSSFileMiB   float64 `json:"rss_file_mib"` // of RSS, mapped file pages (the spool's mmap)
	HeapMiB      float64 `json:"go_heap_inuse_mib"`
	StackMiB     float64 `json:"go_stack_inuse_mib"` // goroutine stacks: a runner per site with mail
	LiveMiB      float64 `json:"go_live_mib"`        // Go heap in use after a full collection (taken after RSS): what the queue keeps
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
		if phase == "restart" && f.memProfile != "" {
			args = append(args, "-memprofile", f.memProfile)
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
		fmt.Fprintf(stdout, "%-8s open %.2f s  load %.2f s  all scheduled at %.2f s  RSS %.0f MiB (peak %.0f MiB, files %.0f MiB)  Go heap %.0f MiB (live %.0f MiB)  stacks %.0f MiB  spool file %.0f MiB  cpu %.1f s  DNS queries %d\n",
			r.Phase, r.OpenS, r.LoadS, r.ScheduledS, r.RSSMiB, r.PeakRSSMiB, r.RSSFileMiB, r.HeapMiB, r.LiveMiB, r.StackMiB, r.SpoolFileMiB, r.CPUS, r.DNSQueries)
	}
	// The targets of BENCHMARKS.md: restart to sending < 30 s, and
	// <= 300 MiB of peak RSS per million queued (10 million in <= 3 GiB).
	fmt.Fprintf(stdout, "restart: every recipient loaded into the queue %.2f s after the process was started; every one on its site (all MX answers in) at %.2f s (target < 30 s); peak RSS %.0f MiB (target <= %.0f MiB: 300 per million)\n",
		res.Restart.LoadedS, res.RestartReadyS, res.Restart.PeakRSSMiB, 300*math.Max(1, float64(f.queued)/1e6))
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
	memProfile := fs.String("memprofile", "", "")
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
	rep.RSSFileMiB = float64(procStatusKB("RssFile")) / 1024
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rep.HeapMiB = float64(ms.HeapInuse) / (1 << 20)
	rep.StackMiB = float64(ms.StackInuse) / (1 << 20)
	rep.SpoolFileMiB = float64(m.Spool.Stats().Bytes) / (1 << 20)
	rep.CPUS = cpuSelf().Seconds()
	rep.DNSQueries = dnsSrv.Queries()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	rep.LiveMiB = float64(ms.HeapAlloc) / (1 << 20)
	if *memProfile != "" {
		// The allocation profile also holds what is in use: read it with
		// -sample_index=inuse_space for what the queue keeps.
		if err := writeAllocs(*memProfile); err != nil {
			return failRep(fmt.Errorf("-memprofile: %w", err))
		}
	}
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
