package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/mta"
	"github.com/penstock-mta/penstock/queue"
	"github.com/penstock-mta/penstock/sim"
	"github.com/penstock-mta/penstock/smtpclient"
)

// demoProvider is one simulated receiving provider of the demo world.
type demoProvider struct {
	name    string
	domains []string
	mx      []string
	b       sim.Behavior
	story   string
	p       *sim.Provider
}

func demoProviders() []*demoProvider {
	var unknown atomic.Int64
	return []*demoProvider{
		{name: "gmail", domains: []string{"gmail.test", "googlemail.test"},
			mx:    []string{"gmail-smtp-in.l.google.com", "alt1.gmail-smtp-in.l.google.com"},
			b:     sim.Behavior{Name: "gmail", STARTTLS: true},
			story: "fast, STARTTLS; the demo rule caps it at 4 connections and 20 msgs/connection (connection quotas)"},
		{name: "yahoo", domains: []string{"yahoo.test", "aol.test"},
			mx: []string{"mta5.am0.yahoodns.net", "mta6.am0.yahoodns.net"},
			b: sim.Behavior{Name: "yahoo", RateLimit: 100, RateWindow: 5 * time.Second,
				ThrottleReply: "421 4.7.0 [TSS04] Messages from 127.0.0.1 temporarily deferred due to unexpected volume or user complaints"},
			story: "accepts 100 msgs per 5 s, then answers 421 [TSS04]: flow control backs off"},
		{name: "outlook", domains: []string{"outlook.test", "hotmail.test"},
			mx: []string{"outlook-com.olc.protection.outlook.com"},
			b: sim.Behavior{Name: "outlook", RcptReply: func(rcpt string) string {
				if strings.HasPrefix(rcpt, "gone") {
					unknown.Add(1)
					return "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302)"
				}
				return ""
			}},
			story: "rejects unknown users with 550: hard bounces, which do not trigger flow control"},
		{name: "orange", domains: []string{"orange.test", "wanadoo.test"},
			mx:    []string{"smtp-in.orange.fr"},
			b:     sim.Behavior{Name: "orange", Refuse: true},
			story: "down for the first 12 s (connections refused): flow control suspends it, probes, and recovers on its own"},
		{name: "small", domains: []string{"small-isp.test"},
			mx:    []string{"mx.small-isp.test"},
			b:     sim.Behavior{Name: "small", StallAt: sim.AtDot, StallFor: 30 * time.Millisecond},
			story: "slow (30 ms per message), default rule"},
	}
}

func cmdDemo(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("demo", stderr)
	n := fs.Int("n", 2000, "messages to inject")
	keep := fs.Bool("keep", false, "keep serving the API until interrupted")
	outage := fs.Duration("outage", 12*time.Second, "how long the orange provider is down")
	if _, ok := positional(fs, args, 0, 0); !ok {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	world, err := sim.NewWorld()
	if err != nil {
		return fail(stderr, err)
	}
	defer world.Close()
	provs := demoProviders()
	// The sender's own domain resolves too, to a mailbox that takes the
	// DSNs Penstock sends for the unknown users: without it each DSN
	// would bounce for an unknown domain and quarantine the sender.
	senderBox, err := world.AddProvider(sim.Behavior{Name: "sender"}, []string{demoSenderDomain}, "mx."+demoSenderDomain)
	if err != nil {
		return fail(stderr, err)
	}
	for _, dp := range provs {
		dp.p, err = world.AddProvider(dp.b, dp.domains, dp.mx...)
		if err != nil {
			return fail(stderr, err)
		}
	}
	dir, err := os.MkdirTemp("", "penstock-demo-")
	if err != nil {
		return fail(stderr, err)
	}
	defer os.RemoveAll(dir)

	cfg, err := demoConfig(world, dir)
	if err != nil {
		return fail(stderr, err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := mta.New(cfg, mta.Options{Logger: logger})
	if err != nil {
		return fail(stderr, err)
	}
	if err := m.Start(ctx); err != nil {
		return fail(stderr, err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		m.Shutdown(sctx)
		cancel()
	}()
	flowLog, cancelSub := m.Log.Subscribe(1024)
	defer cancelSub()
	var flowEvents []events.Record
	var flowMu sync.Mutex
	go func() {
		for r := range flowLog {
			if r.Type == events.FlowControl || r.Type == events.LocalProblem {
				flowMu.Lock()
				flowEvents = append(flowEvents, *r)
				flowMu.Unlock()
			}
		}
	}()

	fmt.Fprintf(stdout, "Penstock demo: a simulated world on loopback (DNS %s, providers on port %d)\n", world.Nameserver(), world.Port)
	for _, dp := range provs {
		fmt.Fprintf(stdout, "  %-8s %-40s %s\n", dp.name, strings.Join(dp.mx, ","), dp.story)
	}
	fmt.Fprintf(stdout, "SMTP injection on %s; dashboard and API on http://%s/\n", m.SMTPAddr(), m.HTTPAddr())
	fmt.Fprintf(stdout, "While it runs, ask it from another terminal: penstock explain user1@yahoo.test -api http://%s\n\n", m.HTTPAddr())

	// The outage ends by itself.
	go func() {
		select {
		case <-time.After(*outage):
		case <-ctx.Done():
			return
		}
		for _, dp := range provs {
			if dp.name == "orange" {
				b := dp.b
				b.Refuse = false
				dp.p.SetBehavior(b)
			}
		}
	}()

	// Inject over SMTP with 20 sessions.
	start := time.Now()
	var injected atomic.Int64
	injectErr := make(chan error, 1)
	go func() { injectErr <- demoInject(ctx, m.SMTPAddr(), *n, provs, &injected) }()

	tty := isTerminal(stdout)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	deadline := time.After(55 * time.Second)
	lines := 0
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-injectErr:
			if err != nil {
				fmt.Fprintln(stderr, "injection:", err)
			}
			injectErr = nil
		case <-deadline:
			fmt.Fprintln(stdout, "\n(time is up: what is still queued stays queued)")
			break loop
		case <-tick.C:
		}
		t := m.Queue.Totals()
		if tty || int(time.Since(start).Seconds())%5 == 0 {
			lines = demoProgress(stdout, m, provs, injected.Load(), int64(*n), t, time.Since(start), lines)
			if !tty {
				lines = 0
			}
		}
		if injected.Load() == int64(*n) && t.Queued == 0 {
			break
		}
	}
	// The collector goroutine may still append: copy under its lock.
	flowMu.Lock()
	evs := append([]events.Record(nil), flowEvents...)
	flowMu.Unlock()
	demoReport(stdout, m, provs, senderBox, injected.Load(), evs, time.Since(start))
	if *keep && ctx.Err() == nil {
		fmt.Fprintf(stdout, "\nThe dashboard stays at http://%s/ (API under /api/v1) until interrupted (Ctrl-C).\n", m.HTTPAddr())
		<-ctx.Done()
	}
	return 0
}

func demoConfig(world *sim.World, dir string) (*config.Config, error) {
	toml := fmt.Sprintf(`
[server]
hostname = "demo.penstock.test"
spool_dir = %q
log_dir = %q

[smtp]
listen = "127.0.0.1:0"

[http]
listen = "127.0.0.1:0"

[dns]
nameservers = [%q]

[delivery]
port = %d
retry = ["2s", "3s"]

[[mx_rule]]
name = "google-demo"
mx = "*.google.com"
max_connections = 4
max_messages_per_connection = 20

[flow_control]
window = "20s"
min_attempts = 10
step_interval = "2s"
suspend_for = "6s"
probe_interval = "2s"
recover_after = "4s"

# Yahoo asks for a long pause after [TSS04]; the demo shortens it.
[[flow_control.pattern]]
match = '\[TSS04\]'
action = "backoff"
duration = "5s"
`, filepath.Join(dir, "spool"), filepath.Join(dir, "log"), world.Nameserver(), world.Port)
	path := filepath.Join(dir, "penstock.toml")
	if err := os.WriteFile(path, []byte(toml), 0o600); err != nil {
		return nil, err
	}
	return config.Load(path)
}

func demoInject(ctx context.Context, addr string, n int, provs []*demoProvider, injected *atomic.Int64) error {
	var domains []string
	for _, dp := range provs {
		domains = append(domains, dp.domains...)
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for c := 0; c < 20; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				d := domains[i%len(domains)]
				local := fmt.Sprintf("user%d", i)
				if i%25 == 3 {
					local = fmt.Sprintf("gone%d", i)
				}
				to := local + "@" + d
				body := fmt.Sprintf("From: News <news@%s>\r\nTo: <%s>\r\nSubject: Demo %d\r\nMessage-ID: <demo%d@%s>\r\n\r\n%s\r\n",
					demoSenderDomain, to, i, i, demoSenderDomain, strings.Repeat("Penstock meters mail like water to a turbine. ", 40))
				if err := smtpSend(addr, "news@"+demoSenderDomain, to, body); err != nil {
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				injected.Add(1)
			}
		}()
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if e, ok := firstErr.Load().(error); ok {
		return e
	}
	return nil
}

// smtpSend injects one message with our own SMTP client (the demo's
// clients stand for the application handing mail to Penstock).
func smtpSend(addr, from, to, body string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := smtpclient.Dial(ctx, addr, smtpclient.Options{EHLO: "demo-client", TLS: smtpclient.TLSDisabled})
	if err != nil {
		return err
	}
	defer c.Quit(ctx)
	_, err = c.Send(ctx, from, []string{to}, []byte(body))
	return err
}

func demoProgress(w io.Writer, m *mta.MTA, provs []*demoProvider, injected, n int64, t queue.Totals, el time.Duration, prev int) int {
	var b strings.Builder
	if prev > 0 {
		fmt.Fprintf(&b, "\033[%dA\033[J", prev)
	}
	fmt.Fprintf(&b, "t=%4.0fs injected %d/%d  queued %d  delivered %d  bounced %d  deferred %d\n",
		el.Seconds(), injected, n, t.Queued, t.Delivered, t.Bounced, t.Deferred)
	fmt.Fprintf(&b, "  %-8s %6s %5s %9s %-9s %s\n", "provider", "queued", "conns", "delivered", "flow", "waiting")
	sites := m.Queue.Sites()
	bySite := map[string]queue.SiteView{}
	for _, s := range sites {
		bySite[s.Site] = s
	}
	for _, dp := range provs {
		var v queue.SiteView
		for _, s := range sites {
			if strings.Contains(s.Site, dp.mx[0]) {
				v = s
			}
		}
		why := ""
		if v.Wait != nil {
			why = v.Wait.Status
		}
		fmt.Fprintf(&b, "  %-8s %6d %5d %9d %-9s %s\n", dp.name, v.Queued, v.Connections, dp.p.Delivered(), v.Flow.State, why)
	}
	io.WriteString(w, b.String())
	return strings.Count(b.String(), "\n")
}

// demoSenderDomain is the domain of the demo's sender, news@.
const demoSenderDomain = "demo.penstock.test"

func demoReport(w io.Writer, m *mta.MTA, provs []*demoProvider, senderBox *sim.Provider, injected int64, evs []events.Record, el time.Duration) {
	t := m.Queue.Totals()
	fmt.Fprintf(w, "\n== Report after %s ==\n", el.Round(100*time.Millisecond))
	// The node's totals also count the DSNs it sent to the sender (one
	// per unknown user); the report separates them so that it adds up.
	dsns := senderBox.Delivered()
	fmt.Fprintf(w, "%d recipients injected = %d delivered + %d bounced + %d expired + %d still queued\n",
		injected, t.Delivered-dsns, t.Bounced, t.Expired, t.Queued)
	fmt.Fprintf(w, "plus %d DSNs (delivery reports for the bounces) delivered to the sender, news@%s; %d deferred attempts along the way\n",
		dsns, demoSenderDomain, t.Deferred)
	var domains []string
	for _, dp := range provs {
		domains = append(domains, dp.domains...)
	}
	fmt.Fprintf(w, "recipient domains: %s\n\n", strings.Join(domains, ", "))
	fmt.Fprintf(w, "%-8s %9s %8s %13s %14s %12s %s\n", "provider", "delivered", "attempts", "max conns", "max msgs/conn", "rejected", "rule")
	for _, dp := range provs {
		st := dp.p.Stats()
		rej := int64(0)
		for _, c := range st.RcptRejected {
			rej += c
		}
		var v queue.SiteView
		for _, s := range m.Queue.Sites() {
			if strings.Contains(s.Site, dp.mx[0]) {
				v = s
			}
		}
		limit := fmt.Sprintf("%d (limit %d)", st.MaxOpen, v.Rule.MaxConnections)
		mpc := fmt.Sprintf("%d (limit %d)", st.MaxMsgsPerConn, v.Rule.MaxMessagesPerConnection)
		fmt.Fprintf(w, "%-8s %9d %8d %13s %14s %12d %s\n", dp.name, st.Delivered, st.Attempts, limit, mpc, rej, v.Rule.Name)
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].Time.Before(evs[j].Time) })
	fmt.Fprintf(w, "\nflow control (%d state changes):\n", len(evs))
	for _, r := range evs {
		fmt.Fprintf(w, "  %s %-14s %s  %s: %s\n", r.Time.Format("15:04:05.0"), r.Type, r.Site, r.Status, r.Detail)
	}
	fmt.Fprintf(w, "\nEvery waiting recipient carries its reason: run the demo with -keep and ask it, e.g.\n  penstock explain yahoo.test -api http://%s\n  penstock queue -api http://%s\n", m.HTTPAddr(), m.HTTPAddr())
}

// isTerminal reports whether w is a terminal (live progress redraws in
// place there; elsewhere it prints a block every few seconds).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
