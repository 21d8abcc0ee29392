package mta

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/penstock-mta/penstock/api"
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/dashboard"
	"github.com/penstock-mta/penstock/queue"
	"github.com/penstock-mta/penstock/smtpserver"
)

type httpServer struct {
	srv *http.Server
	ln  net.Listener
}

func (h *httpServer) Shutdown(ctx context.Context) error { return h.srv.Shutdown(ctx) }

// backend adapts the MTA to the API.
type backend struct{ m *MTA }

func (b backend) Sites() []queue.SiteView                 { return b.m.Queue.Sites() }
func (b backend) Site(name string) (queue.SiteView, bool) { return b.m.Queue.Site(name) }
func (b backend) Explain(ctx context.Context, t string) queue.Explanation {
	return b.m.Queue.Explain(ctx, t)
}
func (b backend) Totals() queue.Totals { return b.m.Queue.Totals() }
func (b backend) Suspend(site string, d time.Duration, who string) error {
	return b.m.Queue.Suspend(site, d, who)
}
func (b backend) Resume(site, who string) error       { return b.m.Queue.Resume(site, who) }
func (b backend) Retry(site, who string) (int, error) { return b.m.Queue.Retry(site, who) }
func (b backend) Purge(site, who string) (int, error) { return b.m.Queue.Purge(site, who) }
func (b backend) Reload() ([]string, error) {
	if err := b.m.ReloadFile(); err != nil {
		return nil, err
	}
	return b.m.RestartNeeded(), nil
}
func (b backend) LocalProblem() (bool, string) {
	on, lp := b.m.Flow.Local()
	return on, lp.Detail
}
func (b backend) Timeline(n int) []api.Minute   { return b.m.activity.Timeline(b.m.opts.Now(), n) }
func (b backend) DKIMDomains() []api.DKIMDomain { return b.m.DKIMDomains() }
func (b backend) FlowChanges(name string) (string, []api.FlowChange, bool) {
	v, ok := b.m.Queue.Site(name)
	if !ok {
		return "", nil, false
	}
	return v.Site, b.m.activity.FlowChanges(v.Site), true
}
func (b backend) CreateDelivery(ctx context.Context, req api.DeliveryRequest) (api.DeliveryView, error) {
	return b.m.campaigns.Create(ctx, req)
}
func (b backend) AddRecipients(ctx context.Context, id, ct string, body io.Reader) (api.AddResult, error) {
	return b.m.campaigns.AddRecipients(ctx, id, ct, body)
}
func (b backend) Deliveries() []api.DeliveryView              { return b.m.campaigns.List() }
func (b backend) Delivery(id string) (api.DeliveryView, bool) { return b.m.campaigns.Detail(id) }
func (b backend) CancelDelivery(id, who string) (int, error)  { return b.m.campaigns.Cancel(id, who) }
func (b backend) SetSuspended(kind, name, who string, on bool) (int, error) {
	return b.m.Queue.SetSuspended(kind, name, who, on)
}
func (b backend) InjectMessage(ctx context.Context, req api.MessageRequest) (string, error) {
	return b.m.Accept(ctx, &smtpserver.Envelope{From: req.From, To: req.To, Tenant: req.Tenant}, req.Body)
}

func (m *MTA) startHTTP(cfg *config.Config) error {
	ln := m.opts.HTTPListener
	if ln == nil {
		if cfg.HTTP.Listen == "" {
			return nil
		}
		var err error
		ln, err = net.Listen("tcp", cfg.HTTP.Listen)
		if err != nil {
			return fmt.Errorf("[http] listen %s: %w", cfg.HTTP.Listen, err)
		}
	}
	if cfg.HTTP.Token == "" {
		if ap, err := netipAddrPort(ln.Addr()); err == nil && !ap.Addr().IsLoopback() {
			ln.Close()
			return errors.New("[http] token is empty: the API listens on loopback only without a token; set [http] token or a loopback listen address")
		}
		m.logger.Warn("HTTP API without a token: listening on loopback only", "addr", ln.Addr().String())
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", api.Handler(backend{m}, cfg.HTTP.Token, cfg.SMTP.MaxMessageSize))
	mux.Handle("GET /metrics", metricsAuth(cfg.HTTP, m.metrics.Handler()))
	mux.Handle("/", dashboard.Handler())
	srv, ln := newHTTPServer(mux, ln, cfg.HTTP)
	m.httpSrv = &httpServer{srv: srv, ln: ln}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.logger.Error("http listener stopped", "err", err)
		}
	}()
	m.logger.Info("HTTP API listening", "addr", ln.Addr().String())
	return nil
}

// HTTP timeouts. A connection that sends nothing, or sends slowly, must not
// hold a file descriptor forever: idle keep-alive connections by the
// thousand once exhausted the process's descriptors, and then SMTP
// deliveries failed with "too many open files".
const (
	httpReadHeaderTimeout = 10 * time.Second
	// Whole requests, bodies included: a campaign's recipient list is
	// streamed in one request, so this is generous.
	httpReadTimeout  = 10 * time.Minute
	httpWriteTimeout = 10 * time.Minute
)

// newHTTPServer builds the one HTTP server of the node: every timeout set,
// and at most [http] max_connections connections open at once on ln (the
// returned listener).
func newHTTPServer(h http.Handler, ln net.Listener, cfg config.HTTP) (*http.Server, net.Listener) {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: httpReadHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       cfg.IdleTimeout.Std(),
	}
	return srv, newLimitListener(ln, cfg.MaxConnections)
}

// metricsAuth guards /metrics with [http] metrics_token, or else the API
// token, unless metrics_open says a scraper may read it without one.
func metricsAuth(cfg config.HTTP, h http.Handler) http.Handler {
	if cfg.MetricsOpen {
		return h
	}
	if cfg.MetricsToken != "" {
		return api.BearerAuth(cfg.MetricsToken, "[http] metrics_token", h)
	}
	if cfg.Token != "" {
		return api.BearerAuth(cfg.Token, "[http] token", h)
	}
	return h // no token at all: the listener is on loopback (startHTTP)
}

// HTTPAddr is the API listener's address ("" when disabled).
func (m *MTA) HTTPAddr() string {
	if m.httpSrv == nil {
		return ""
	}
	return m.httpSrv.ln.Addr().String()
}

func loadTLS(cert, key string) (*tls.Config, error) {
	c, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("[smtp] tls_cert/tls_key: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12}, nil
}

func netipAddrPort(a net.Addr) (netip.AddrPort, error) {
	return netip.ParseAddrPort(a.String())
}
