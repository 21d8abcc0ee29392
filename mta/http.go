package mta

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"

	"github.com/penstock-mta/penstock/api"
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/dashboard"
	"github.com/penstock-mta/penstock/smtpserver"
)

type httpServer struct {
	srv *http.Server
	ln  net.Listener
}

func (h *httpServer) Shutdown(ctx context.Context) error { return h.srv.Shutdown(ctx) }

// LocalProblem is flow control's verdict on our own side (api.Node).
func (m *MTA) LocalProblem() (bool, string) {
	on, lp := m.Flow.Local()
	return on, lp.Detail
}

// InjectMessage is POST /api/v1/messages (api.Node): Accept, as SMTP does.
func (m *MTA) InjectMessage(ctx context.Context, req api.MessageRequest) (string, error) {
	return m.Accept(ctx, &smtpserver.Envelope{From: req.From, To: req.To, Tenant: req.Tenant}, req.Body)
}

// apiDeps are the parts the API drives, as they are.
func (m *MTA) apiDeps() api.Deps {
	d := api.Deps{Queue: m.Queue, Deliveries: m.campaigns, Quarantine: m.Quarantine, Node: m, Activity: m.activity,
		Bounces: m.bounceTop, DKIM: m.dkim, Reports: m, TLS: m.tlsStatus, TLSReports: api.TLSReportsOf(m.tlsrpt, m.Config),
		EventsOut: m.eventsOut, Now: m.opts.Now}
	if m.warmup != nil {
		d.Warmup = m.warmup
	}
	return d
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
	mux.Handle("/api/", api.Handler(m.apiDeps(), cfg.HTTP.Token, cfg.SMTP.MaxMessageSize))
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
