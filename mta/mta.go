// Package mta assembles Penstock from its configuration: it builds the
// spool, resolver, quota store, flow control, bounce classifier, delivery
// log, the pipeline's stages (intake, queue, outcome), the campaigns and
// the listeners, passes each the parts it needs through its Deps, and owns
// their lifetimes (start, reload, graceful stop). It holds no protocol,
// scheduling or outcome logic of its own: injection hands messages to
// Accept (intake), the queue hands each attempt's outcome to the outcome
// stage. docs/ARCHITECTURE.md walks the whole pipeline.
//
// Lifetimes. Every goroutine started here has an owner that stops it and
// waits for it in Shutdown: the listeners, the ticker and the TLS reports'
// daily job (wg, stopped by closing their servers and by stopJobs), the
// queue (Queue.Close), then the delivery-log subscribers (subs, stopped by
// cancelling their subscriptions), before the log and the spool close.
package mta

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	smtp "github.com/emersion/go-smtp"

	"github.com/penstock-mta/penstock/api"
	"github.com/penstock-mta/penstock/bounce"
	"github.com/penstock-mta/penstock/campaigns"
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/dkim"
	"github.com/penstock-mta/penstock/dns"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/eventsout"
	"github.com/penstock-mta/penstock/flow"
	"github.com/penstock-mta/penstock/intake"
	"github.com/penstock-mta/penstock/message"
	"github.com/penstock-mta/penstock/metrics"
	"github.com/penstock-mta/penstock/outcome"
	"github.com/penstock-mta/penstock/quarantine"
	"github.com/penstock-mta/penstock/queue"
	"github.com/penstock-mta/penstock/quota"
	"github.com/penstock-mta/penstock/reports"
	"github.com/penstock-mta/penstock/smtpclient"
	"github.com/penstock-mta/penstock/smtpserver"
	"github.com/penstock-mta/penstock/spool"
	"github.com/penstock-mta/penstock/tenants"
	"github.com/penstock-mta/penstock/tlspolicy"
	"github.com/penstock-mta/penstock/tlsrpt"
	"github.com/penstock-mta/penstock/tlsstatus"
	"github.com/penstock-mta/penstock/warmup"
)

// Options are the parts a caller (tests, demo, bench) may replace.
type Options struct {
	Logger *slog.Logger
	Now    func() time.Time
	Dialer smtpclient.Dialer
	// SMTPListener / HTTPListener: use these instead of listening on the
	// configured addresses (tests pass 127.0.0.1:0 listeners).
	SMTPListener net.Listener
	HTTPListener net.Listener
	// BounceListener: use this for [bounce] listen.
	BounceListener net.Listener
	// NoSync disables fsync: benchmarks of the unsafe mode only, labelled.
	NoSync bool
	// TLSRoots verify the certificates of outgoing connections (tls =
	// verify, REQUIRETLS); nil: the system's roots. Tests give their CA.
	TLSRoots *x509.CertPool
	// MTASTSPort is the HTTPS port of MTA-STS policy hosts (0: 443); tests
	// only.
	MTASTSPort int
	// TLSReport hears every TLS outcome of delivery (TLSRPT); nil: nobody.
	TLSReport tlspolicy.Reporter
	// WarmupNow and WarmupDay are the warm-up clock and day length (nil,
	// 0: the real clock, 24 h); tests run days in seconds.
	WarmupNow func() time.Time
	WarmupDay time.Duration
}

// MTA is one running Penstock node.
type MTA struct {
	opts   Options
	logger *slog.Logger
	cfg    atomic.Pointer[config.Config]
	// started is the configuration the node started with: what listeners,
	// stores and the resolver run with until a restart.
	startCfg *config.Config

	Spool      *spool.Spool
	Queue      *queue.Queue
	Log        *events.Log
	Flow       *flow.Controller
	Quotas     quota.Store
	Resolver   dns.Resolver
	Bounce     *bounce.Classifier
	Quarantine *quarantine.Store
	bounceTop  *bounce.Top
	verp       *reports.VERP
	reports    *reports.Intake
	bounceSrv  *smtpserver.Server
	bounceLn   net.Listener

	smtp    *smtpserver.Server
	smtpLn  net.Listener
	httpSrv *httpServer
	// wg: the listeners and the ticker, stopped by Shutdown before the
	// queue's last outcomes are saved. subs: the delivery-log subscribers,
	// which end when their subscription is cancelled, after that.
	wg        sync.WaitGroup
	subs      sync.WaitGroup
	unsub     []func()
	started   time.Time
	validity  atomic.Int64
	reloadMu  sync.Mutex
	dkim      *dkim.Stage        // the body pipeline's signing stage
	stopJobs  context.CancelFunc // ends the ticker and the TLS reports' job
	flowLog   *flow.Journal      // records flow control's changes
	activity  *api.Activity
	metrics   *metrics.Metrics
	intake    *intake.Intake
	campaigns *campaigns.Store
	outcome   *outcome.Stage
	tlsrpt    *tlsrpt.Recorder
	tlsDaily  *tlsrpt.Daily
	tlsStatus *tlsstatus.Board // policies and TLS outcomes, for GET /api/v1/tls
	eventsOut *eventsout.Manager
	warmup    *warmup.Tracker // nil without [[warmup]]
	resolvers []io.Closer     // DNS resolvers to close at Shutdown (their lookup goroutines and sockets)
}

// tick drives flow control's time-based transitions for sites without
// traffic (a suspension ends, a quiet site recovers).
func (m *MTA) tick(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			m.Flow.Tick(now)
			if now.Second()%2 == 0 {
				m.campaigns.SaveDirty()
			}
			if now.Second()%15 == 0 {
				m.Queue.ExpireHeld(m.opts.Now())
				m.Queue.Sweep(m.opts.Now()) // at most every few minutes
			}
			m.sampleWaits(now)
			if m.warmup != nil {
				m.warmup.Tick()
			}
		}
	}
}

// New builds every part from cfg. Nothing listens until Start. When it
// fails, what it opened is closed again.
func New(cfg *config.Config, opts Options) (_ *MTA, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m := &MTA{opts: opts, logger: opts.Logger}
	m.cfg.Store(cfg)
	m.startCfg = cfg
	m.validity.Store(int64(time.Duration(cfg.Delivery.Validity)))

	if err := os.MkdirAll(cfg.Server.SpoolDir, 0o750); err != nil {
		return nil, fmt.Errorf("spool_dir %s: %w", cfg.Server.SpoolDir, err)
	}
	sp, err := spool.Open(cfg.Server.SpoolDir, spool.Options{NoSync: opts.NoSync, Logger: opts.Logger})
	if err != nil {
		return nil, fmt.Errorf("opening the spool in %s: %w", cfg.Server.SpoolDir, err)
	}
	m.Spool = sp
	defer func() {
		if err != nil {
			m.closeStores()
		}
	}()
	lg, err := events.Open(cfg.Server.LogDir, events.Options{Now: opts.Now})
	if err != nil {
		return nil, fmt.Errorf("opening the delivery log in %s: %w", cfg.Server.LogDir, err)
	}
	m.Log = lg

	res, err := dns.New(cfg.DNS.Nameservers, time.Duration(cfg.DNS.Timeout))
	if err != nil {
		return nil, fmt.Errorf("dns: %w", err)
	}
	// The guard sits under the cache: an NXDOMAIN it does not believe
	// reaches the cache as a temporary error, never cached as permanent.
	res = dns.NewGuard(res, dns.GuardConfig{Canaries: cfg.DNS.Canaries, Now: opts.Now})
	m.Resolver = dns.NewCache(res, 100000, opts.Now)
	m.resolvers = append(m.resolvers, m.Resolver.(io.Closer))
	m.Quotas = quota.NewLocal(quota.RealClock())

	bc, err := cfg.BounceClassifier()
	if err != nil {
		return nil, err
	}
	m.Bounce = bc
	m.bounceTop = bounce.NewTop(10000)
	qs, err := quarantine.New(sp.KV(quarantine.Bucket), cfg.QuarantineConfig(opts.Logger), opts.Now)
	if err != nil {
		return nil, fmt.Errorf("loading the quarantine: %w", err)
	}
	m.Quarantine = qs
	if m.tlsrpt, err = tlsrpt.New(sp.KV(tlsrpt.Bucket), opts.Now); err != nil {
		return nil, fmt.Errorf("loading the TLS report counts: %w", err)
	}
	if m.verp, err = reports.NewVERP(cfg, sp.KV("bounce")); err != nil {
		return nil, fmt.Errorf("[bounce]: %w", err)
	}

	fc, err := cfg.FlowConfig()
	if err != nil {
		return nil, err
	}
	m.flowLog = &flow.Journal{Log: lg, Logger: opts.Logger}
	m.Flow = flow.New(fc, flow.Options{Now: opts.Now, OnChange: m.flowLog.Change, OnLocal: m.flowLog.Local})

	if err := setupCluster(m, cfg); err != nil {
		return nil, fmt.Errorf("[cluster]: %w", err)
	}
	qc, err := queue.ConfigFrom(cfg)
	if err != nil {
		return nil, err
	}
	var fl queue.Flow = m.Flow
	if !cfg.FlowControl.Enabled {
		fl = nil
	}
	wu, err := m.setupWarmup(cfg, fc)
	if err != nil {
		return nil, err
	}
	m.dkim = dkim.NewStage(opts.Now, opts.Logger)
	if err := m.loadSigner(cfg); err != nil {
		return nil, err
	}
	policies, err := m.tlsPolicies(cfg)
	if err != nil {
		return nil, err
	}
	m.tlsStatus = tlsstatus.New(0)
	m.Queue = queue.New(qc, queue.Deps{
		TLSPolicy: policies, TLSReport: m.tlsReport(), TLSStatus: m.tlsStatus,
		Spool: sp, Resolver: m.Resolver, Quotas: m.Quotas, Flow: fl, Bounce: bc,
		Log: lg, Logger: opts.Logger, Dialer: opts.Dialer, Now: opts.Now, Outcome: m.observe, ReturnPath: m.verp.ReturnPath,
		RequireTLS: outcome.RequiresTLS, TLSConfig: &tls.Config{RootCAs: opts.TLSRoots}, Warmup: wu,
		Pipeline: message.New(message.Options{AppendLoad: sp.AppendBody, Sign: m.dkim,
			Render: campaignsRender{m}}),
		CampaignRate: func(id string) int { return m.campaigns.PerHour(id) }, // built below, before Start
	})
	if err := shareSuspensions(m); err != nil {
		return nil, fmt.Errorf("[cluster]: %w", err)
	}
	sc, err := smtpserver.ConfigFrom(cfg)
	if err != nil {
		return nil, err
	}
	if m.smtp, err = smtpserver.New(sc, m, opts.Logger); err != nil { // it listens in Start
		return nil, err
	}
	if m.eventsOut, err = eventsout.New(cfg, eventsout.Options{KV: sp.KV(eventsout.Bucket), Logger: opts.Logger}); err != nil {
		return nil, fmt.Errorf("event outputs: %w", err)
	}
	m.metrics = metrics.New(metrics.Deps{Queue: m.Queue, Flow: m.Flow, Spool: sp, Quotas: m.Quotas, SMTP: m.smtp,
		Reports: m, Outputs: m.eventsOut, DKIM: m.dkim, TLS: m.tlsrpt})
	validity := func() time.Duration { return time.Duration(m.validity.Load()) }
	m.intake = intake.New(intake.Deps{Spool: sp, Queue: m.Queue, Log: lg, Quarantine: qs, Metrics: m.metrics,
		Validity: validity, Logger: opts.Logger, Now: opts.Now})
	m.campaigns = campaigns.New(campaigns.Deps{
		Spool: sp, Queue: m.Queue, Log: lg, Suppressed: m.intake.Suppressed, LogSuppressed: m.intake.LogSuppressed,
		Validity: validity, Hostname: func() string { return m.Config().Server.Hostname }, Logger: opts.Logger, Now: opts.Now,
	})
	m.outcome = outcome.New(outcome.Deps{
		Quarantine: qs, Campaigns: m.campaigns, Metrics: m.metrics, Bodies: sp,
		Inject: func(ctx context.Context, to string, body []byte, now time.Time) error {
			_, err := m.intake.Store(ctx, "", []string{to}, body, 0, "", now)
			return err
		},
		Settings: func() outcome.Settings {
			c := m.Config()
			return outcome.Settings{DSN: c.Delivery.DSN, Hostname: c.Server.Hostname}
		},
		Logger: opts.Logger, Now: opts.Now,
	})
	m.activity = api.NewActivity()
	return m, nil
}

// The queue is built before the campaigns and the outcome stage, which
// need it: these two forward its hooks to them.
// campaignsRender forwards the render stage to the campaign store, made
// after the queue it feeds.
type campaignsRender struct{ m *MTA }

func (r campaignsRender) Name() string { return "render" }
func (r campaignsRender) Scope(msg *spool.Message) message.Scope {
	return r.m.campaigns.RenderStage().Scope(msg)
}
func (r campaignsRender) Apply(ctx context.Context, s *message.Send) error {
	return r.m.campaigns.RenderStage().Apply(ctx, s)
}

func (m *MTA) observe(msg *spool.Message, i int, o queue.Outcome, site string) {
	m.outcome.Observe(msg, i, o, site)
}

func (m *MTA) closeStores() {
	if c, ok := m.Quotas.(io.Closer); ok {
		c.Close()
	}
	if m.Log != nil {
		m.Log.Close()
	}
	if m.Spool != nil {
		m.Spool.Close()
	}
}

// Config returns the configuration in force.
func (m *MTA) Config() *config.Config { return m.cfg.Load() }

// subscribe runs fn on its own subscription to the delivery log. fn must
// return when the channel closes: Shutdown cancels the subscription and
// waits for it.
func (m *MTA) subscribe(fn func(<-chan *events.Record)) {
	ch, cancel := m.Log.Subscribe(8192)
	m.unsub = append(m.unsub, cancel)
	m.subs.Add(1)
	go func() {
		defer m.subs.Done()
		fn(ch)
	}()
}

// Start loads the spool into the queue and starts the listeners. When it
// fails, the caller still calls Shutdown, which stops what was started.
func (m *MTA) Start(ctx context.Context) error {
	m.started = m.opts.Now()
	if err := m.campaigns.Load(); err != nil {
		return fmt.Errorf("loading deliveries: %w", err)
	}
	n := 0
	queuedBy := map[string]int{}
	// Scan, not Load: the queue keeps no decoded message (it reads each
	// back from the spool when it sends it), so one reused value per
	// record leaves the collector nothing to clean up after a restart.
	err := m.Spool.Scan(func(msg *spool.Message) error {
		if msg.DeliveryID != "" {
			for _, r := range msg.Recipients {
				if !r.State.Final() {
					queuedBy[msg.DeliveryID]++
				}
			}
		}
		m.Queue.Enqueue(msg)
		n++
		return nil
	})
	if err != nil {
		return fmt.Errorf("loading the spool: %w", err)
	}
	m.campaigns.Reconcile(queuedBy)
	if n > 0 {
		m.logger.Info("spool loaded", "messages", n, "took", m.opts.Now().Sub(m.started).Round(time.Millisecond))
	}
	jobs, stop := context.WithCancel(context.Background())
	m.stopJobs = stop
	m.run(func() { m.tick(jobs) })
	m.subscribe(m.activity.Run)
	m.subscribe(m.metrics.Run)
	m.subscribe(func(ch <-chan *events.Record) { outcome.FeedTop(m.bounceTop, ch) })
	if m.warmup != nil {
		m.subscribe(m.warmup.Feed)
	}
	m.tlsDaily = m.newTLSDaily()
	m.run(func() { m.tlsDaily.Run(jobs) })
	// The outputs follow the delivery log's files with cursors of their
	// own, so nothing they do can slow delivery.
	if err := m.eventsOut.Start(); err != nil {
		return fmt.Errorf("event outputs: %w", err)
	}
	cfg := m.Config()
	ln, err := m.listen(m.opts.SMTPListener, "[smtp]", cfg.SMTP.Listen)
	if err != nil {
		return err
	}
	m.smtpLn = ln
	m.serve("smtp listener", func() error { return m.smtp.Serve(ln) })
	if err := m.startHTTP(cfg); err != nil {
		return err
	}
	return m.startBounceListener(cfg)
}

// listen is the listener a caller gave (tests), or else one on addr.
func (m *MTA) listen(given net.Listener, section, addr string) (net.Listener, error) {
	if given != nil {
		return given, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s listen %s: %w", section, addr, err)
	}
	return ln, nil
}

// run runs fn on a goroutine that Shutdown waits for (m.wg).
func (m *MTA) run(fn func()) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		fn()
	}()
}

// serve runs a listener's serve loop (Shutdown closes the server, which
// ends it) and logs an end that is not that close.
func (m *MTA) serve(what string, serve func() error) {
	m.run(func() {
		err := serve()
		if err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, smtpserver.ErrServerClosed) && !errors.Is(err, http.ErrServerClosed) {
			m.logger.Error(what+" stopped", "err", err)
		}
	})
}

// SMTPAddr is the injection listener's address.
func (m *MTA) SMTPAddr() string {
	if m.smtpLn == nil {
		return ""
	}
	return m.smtpLn.Addr().String()
}

// Shutdown stops accepting, lets sessions finish within ctx's deadline and
// keeps everything else in the spool.
func (m *MTA) Shutdown(ctx context.Context) error {
	var errs []error
	check := func(what string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	if m.smtp != nil {
		check("smtp", m.smtp.Shutdown(ctx))
	}
	if m.bounceSrv != nil {
		check("bounce listener", m.bounceSrv.Shutdown(ctx))
	}
	if m.httpSrv != nil {
		check("http", m.httpSrv.Shutdown(ctx))
	}
	check("queue", m.Queue.Close(ctx))
	// Cluster mode: stop the flow bridge, give back the leases, leave.
	if c, ok := m.Quotas.(io.Closer); ok {
		check("cluster", c.Close())
	}
	if m.stopJobs != nil {
		m.stopJobs() // the TLS reports' job saves the day's counts as it ends
	}
	m.wg.Wait()
	for _, r := range m.resolvers {
		check("resolver", r.Close())
	}
	m.campaigns.SaveDirty()
	for _, f := range m.unsub {
		f()
	}
	m.subs.Wait()
	if m.warmup != nil {
		check("warm-up state", m.warmup.Save())
	}
	if m.eventsOut != nil {
		check("event outputs", m.eventsOut.Close())
	}
	check("delivery log", m.Log.Close())
	check("spool", m.Spool.Close())
	return errors.Join(errs...)
}

// Accept stores an injected message durably and queues it (package
// intake). It returns only after the message is on disk
// (docs/ARCHITECTURE.md, invariant 1). Quarantined and denylisted
// recipients are suppressed; the others go on.
func (m *MTA) Accept(ctx context.Context, env *smtpserver.Envelope, body []byte) (string, error) {
	id, err := m.intake.Store(ctx, env.From, env.To, body, outcome.Flags(env.RequireTLS), env.Tenant, m.opts.Now())
	if errors.Is(err, tenants.ErrBadName) {
		return "", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: tenants.Header + ": " + err.Error()}
	}
	return id, err
}

// BorrowsBody tells the SMTP server that Accept keeps nothing of a body:
// the spool copies it into its transaction and Put keeps nothing after it
// returns; the delivery log takes its size only.
func (m *MTA) BorrowsBody() {}

// Reload swaps in a new configuration: new rules apply to new connections.
// Keys that only take effect at start are named in the log (and by
// RestartNeeded), never silently kept.
// A configuration that fails to build is refused and the running one stays.
func (m *MTA) Reload(cfg *config.Config) error {
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	if err := cfg.Validate(); err != nil {
		return err
	}
	qc, err := queue.ConfigFrom(cfg)
	if err != nil {
		return err
	}
	fc, err := cfg.FlowConfig()
	if err != nil {
		return err
	}
	if err := m.loadSigner(cfg); err != nil {
		return err
	}
	m.Queue.SetConfig(qc)
	m.Flow.SetConfig(fc)
	m.validity.Store(int64(time.Duration(cfg.Delivery.Validity)))
	m.cfg.Store(cfg)
	m.Log.Write(&events.Record{Type: events.AdminAction, Time: m.opts.Now(), Status: "reload", Detail: cfg.File})
	m.logger.Info("configuration reloaded", "file", cfg.File, "rules", len(qc.Rules.Rules()))
	if keys := config.RestartNeeded(m.startCfg, cfg); len(keys) > 0 {
		m.logger.Warn("configuration reloaded, but some keys wait for a restart", "keys", strings.Join(keys, ","))
	}
	return nil
}

// loadSigner puts cfg's DKIM keys in force, logging what is wrong with
// them short of refusal.
func (m *MTA) loadSigner(cfg *config.Config) error {
	warnings, err := m.dkim.Load(cfg)
	for _, w := range warnings {
		m.logger.Warn("dkim", "warning", w)
	}
	if err == nil && len(cfg.DKIM) > 0 {
		m.logger.Info("dkim keys loaded", "keys", len(cfg.DKIM), "rsa_signer", dkim.RSAImplementation())
	}
	return err
}

// RestartNeeded names the keys of the configuration in force that differ
// from the one the node started with and wait for a restart.
func (m *MTA) RestartNeeded() []string { return config.RestartNeeded(m.startCfg, m.Config()) }

// ReloadFile re-reads the configuration file in force (SIGHUP, and
// api.Node); it returns the keys that changed but wait for a restart.
func (m *MTA) ReloadFile() ([]string, error) {
	f := m.Config().File
	if f == "" {
		return nil, errors.New("running on built-in defaults: no file to reload")
	}
	// Logged here, so that a reload through the API that fails is logged
	// like one by SIGHUP.
	cfg, err := config.Load(f)
	if err == nil {
		err = m.Reload(cfg)
	}
	if err != nil {
		m.logger.Error("reload refused, the running configuration stays", "file", f, "err", err)
		return nil, err
	}
	return m.RestartNeeded(), nil
}

// tlsReport is who hears each TLS outcome of delivery: the TLSRPT
// recorder, and the caller's reporter when Options names one.
func (m *MTA) tlsReport() tlspolicy.Reporter { return tlspolicy.Tee{m.tlsrpt, m.opts.TLSReport} }
