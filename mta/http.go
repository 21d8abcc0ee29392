package mta

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"

	"github.com/penstock-mta/penstock/api"
	"github.com/penstock-mta/penstock/campaigns"
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/dashboard"
	"github.com/penstock-mta/penstock/dkim"
	"github.com/penstock-mta/penstock/queue"
	"github.com/penstock-mta/penstock/smtpserver"
)

type httpServer struct {
	srv *http.Server
	ln  net.Listener
}

func (h *httpServer) Shutdown(ctx context.Context) error { return h.srv.Shutdown(ctx) }

// backend adapts the MTA to the API.
type backend struct {
	m *MTA
	// The queue's views and operator actions (Sites, Site, Explain,
	// Totals, Suspend, Resume, Retry, Purge) and the campaigns' are the
	// API's as they are.
	*queue.Queue
	*campaigns.Store
}

// CancelDelivery is the campaign's (the queue's drops its queued mail).
func (b backend) CancelDelivery(id, who string) (int, error) { return b.Store.CancelDelivery(id, who) }

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
func (b backend) Timeline(n int) []api.Minute      { return b.m.activity.Timeline(b.m.opts.Now(), n) }
func (b backend) DKIMDomains() []dkim.DomainStatus { return b.m.dkim.Domains() }
func (b backend) FlowChanges(name string) (string, []api.FlowChange, bool) {
	v, ok := b.m.Queue.Site(name)
	if !ok {
		return "", nil, false
	}
	return v.Site, b.m.activity.FlowChanges(v.Site), true
}
func (b backend) InjectMessage(ctx context.Context, req api.MessageRequest) (string, error) {
	return b.m.Accept(ctx, &smtpserver.Envelope{From: req.From, To: req.To, Tenant: req.Tenant}, req.Body)
}

func (m *MTA) startHTTP(cfg *config.Config) error {
	if m.opts.HTTPListener == nil && cfg.HTTP.Listen == "" {
		return nil
	}
	ln, err := m.listen(m.opts.HTTPListener, "[http]", cfg.HTTP.Listen)
	if err != nil {
		return err
	}
	if cfg.HTTP.Token == "" {
		if ap, err := netipAddrPort(ln.Addr()); err == nil && !ap.Addr().IsLoopback() {
			ln.Close()
			return errors.New("[http] token is empty: the API listens on loopback only without a token; set [http] token or a loopback listen address")
		}
		m.logger.Warn("HTTP API without a token: listening on loopback only", "addr", ln.Addr().String())
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", api.Handler(backend{m, m.Queue, m.campaigns}, cfg.HTTP.Token, cfg.SMTP.MaxMessageSize))
	mux.Handle("GET /metrics", api.MetricsAuth(cfg.HTTP, m.metrics.Handler()))
	mux.Handle("/", dashboard.Handler())
	srv, ln := api.NewServer(mux, ln, cfg.HTTP)
	m.httpSrv = &httpServer{srv: srv, ln: ln}
	m.serve("http listener", func() error { return srv.Serve(ln) })
	m.logger.Info("HTTP API listening", "addr", ln.Addr().String())
	return nil
}

// HTTPAddr is the API listener's address ("" when disabled).
func (m *MTA) HTTPAddr() string {
	if m.httpSrv == nil {
		return ""
	}
	return m.httpSrv.ln.Addr().String()
}

func netipAddrPort(a net.Addr) (netip.AddrPort, error) {
	return netip.ParseAddrPort(a.String())
}
