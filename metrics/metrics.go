// Package metrics exports Penstock's Prometheus metrics. Counters are fed
// by the delivery log (one subscriber, no work on the delivery path);
// gauges are read from the running parts at scrape time. Each MTA has its
// own registry: nothing is global.
//
// Names follow penstock_<pkg>_<thing>[_total]. Labels are low-cardinality
// only: rule (MX rule names), reason and class (bounce qualification),
// status (the status texts), state (flow states). Never a recipient
// domain or site.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/eventsout"
	"github.com/penstock-mta/penstock/flow"
	"github.com/penstock-mta/penstock/quota"
	"github.com/penstock-mta/penstock/reports"
	"github.com/penstock-mta/penstock/smtpserver"
	"github.com/penstock-mta/penstock/spool"
)

// Deps are the running parts the gauges read at scrape time, each as it
// is: package mta passes its queue, flow controller, spool, quota store,
// listeners and stages. A nil optional part has no series; Queue, Flow
// and Spool are required.
type Deps struct {
	// Queue counts queued recipients per status text and open connections
	// per MX rule (one walk of the queues for both), and the connections
	// each rule has opened since the start, and how many times an idle
	// connection took another site's job instead of that site dialling.
	Queue interface {
		Gauges() (byStatus, connsByRule map[string]int)
		ConnectionsOpened() map[string]uint64
		SessionsShared() uint64
	}
	Flow interface {
		States() map[string]int       // sites per flow state
		SourceStates() map[string]int // (site, source) pairs per flow state
		Local() (bool, flow.LocalProblem)
	}
	Spool interface{ Stats() spool.Stats }
	// Quotas: a quota.Degrader among them reports a cluster node running
	// on its local share.
	Quotas  any
	SMTP    interface{ Stats() smtpserver.Stats }    // the injection listener
	Reports interface{ Reports() reports.Stats }     // the bounce listener's tally
	Outputs interface{ Status() []eventsout.Status } // webhooks, streams, PostgreSQL
	// DKIM counts messages by signing result: "signed", "third_party"
	// (signed by a domain not aligned with From), "unsigned_<reason>".
	DKIM interface{ Counts() map[string]uint64 }
	// TLS counts outgoing TLS sessions by result: "success" or the
	// RFC 8460 §4.3 result type of the failure.
	TLS interface{ Counts() map[string]uint64 }
}

// Metrics holds the registry and the counters.
type Metrics struct {
	reg        *prometheus.Registry
	injected   prometheus.Counter
	delivered  *prometheus.CounterVec
	deferred   *prometheus.CounterVec
	bounced    *prometheus.CounterVec
	expired    prometheus.Counter
	suppressed prometheus.Counter
	flowChange *prometheus.CounterVec
	ack        prometheus.Histogram
	toDelivery prometheus.Histogram
}

// New builds the registry with the gauges of the parts d.
func New(d Deps) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		injected: prometheus.NewCounter(prometheus.CounterOpts{Name: "penstock_smtpserver_recipients_injected_total",
			Help: "Recipients accepted for delivery (SMTP and HTTP)."}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "penstock_delivery_delivered_total",
			Help: "Recipients delivered, by MX rule."}, []string{"rule"}),
		deferred: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "penstock_delivery_deferred_total",
			Help: "Temporary failures, by MX rule and bounce reason."}, []string{"rule", "reason"}),
		bounced: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "penstock_delivery_bounced_total",
			Help: "Recipients bounced, by MX rule, reason and class."}, []string{"rule", "reason", "class"}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{Name: "penstock_delivery_expired_total",
			Help: "Recipients whose validity ran out."}),
		suppressed: prometheus.NewCounter(prometheus.CounterOpts{Name: "penstock_delivery_suppressed_total",
			Help: "Recipients not sent because they are quarantined or denylisted."}),
		flowChange: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "penstock_flow_changes_total",
			Help: "Flow-control state changes, by the state entered."}, []string{"state"}),
		ack: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "penstock_smtpserver_ack_seconds",
			Help: "Time from the end of DATA to the durable acknowledgement.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		toDelivery: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "penstock_delivery_time_to_delivery_seconds",
			Help: "Time from reception to delivery.", Buckets: prometheus.ExponentialBuckets(0.01, 4, 12)}),
	}
	reg.MustRegister(m.injected, m.delivered, m.deferred, m.bounced, m.expired, m.suppressed, m.flowChange, m.ack, m.toDelivery)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(&gauges{src: d,
		queued: prometheus.NewDesc("penstock_queue_recipients", "Queued recipients, by status text.", []string{"status"}, nil),
		conns:  prometheus.NewDesc("penstock_queue_connections", "Open delivery connections, by MX rule.", []string{"rule"}, nil),
		opened: prometheus.NewDesc("penstock_queue_connections_opened_total", "Delivery connections opened (greeted, EHLO answered), by MX rule.", []string{"rule"}, nil),
		shared: prometheus.NewDesc("penstock_queue_sessions_shared_total", "Jobs an idle delivery connection took from another site at the same MX address, instead of that site opening a connection.", nil, nil),
		flow:   prometheus.NewDesc("penstock_flow_sites", "Sites per flow-control state.", []string{"state"}, nil),
		flowSrc: prometheus.NewDesc("penstock_flow_sources", "Sources at sites, (site, source) pairs with recent attempts, per flow-control state.",
			[]string{"state"}, nil),
		local:  prometheus.NewDesc("penstock_flow_local_problem", "1 while errors across many sites point at our side.", nil, nil),
		spoolM: prometheus.NewDesc("penstock_spool_messages", "Messages in the spool.", nil, nil),
		spoolR: prometheus.NewDesc("penstock_spool_recipients", "Queued recipients in the spool.", nil, nil),
		spoolB: prometheus.NewDesc("penstock_spool_bytes", "Spool size on disk.", nil, nil),
		degr:   prometheus.NewDesc("penstock_quota_degraded", "1 while a cluster node runs on its local share of the quotas (Redis unreachable).", nil, nil),
		smtp: smtpDescs{
			sessions:  prometheus.NewDesc("penstock_smtpserver_sessions", "Open SMTP injection sessions.", nil, nil),
			rejected:  prometheus.NewDesc("penstock_smtpserver_rejected_total", "SMTP injection refusals, by reason.", []string{"reason"}, nil),
			stress:    prometheus.NewDesc("penstock_smtpserver_stress", "1 while the SMTP listener is under stress (idle sessions time out sooner).", nil, nil),
			stressed:  prometheus.NewDesc("penstock_smtpserver_stress_entered_total", "Times the SMTP listener entered stress mode.", nil, nil),
			delayed:   prometheus.NewDesc("penstock_smtpserver_auth_delayed_total", "Failed AUTH replies held back by the per-address throttle.", nil, nil),
			throttled: prometheus.NewDesc("penstock_smtpserver_auth_throttled_clients", "Client addresses refused AUTH for a cool-down now.", nil, nil),
		},
	})
	reg.MustRegister(&labelCounters{read: d.DKIM, seed: "signed", desc: prometheus.NewDesc("penstock_dkim_messages_total",
		"Messages through the DKIM signing stage, by result: signed, third_party (not aligned with From), unsigned_<reason> (no_key, no_from, bad_from, key_not_active).",
		[]string{"result"}, nil)})
	reg.MustRegister(&labelCounters{read: d.TLS, seed: "success", desc: prometheus.NewDesc("penstock_tls_sessions_total",
		"Outgoing TLS sessions by result: success, or the RFC 8460 result type of the failure (starttls-not-supported, certificate-expired, ...).",
		[]string{"result"}, nil)})
	reg.MustRegister(&reportCounters{src: d.Reports,
		reports: prometheus.NewDesc("penstock_reports_total",
			"Reports received by the bounce listener: outcome acted (label how: verp, trusted_network, trusted_dkim) or ignored (reason: no_verp, bad_verp, old_verp, untrusted, unreadable, ...).",
			[]string{"outcome", "reason"}, nil),
		refused: prometheus.NewDesc("penstock_reports_refused_total", "Reports refused at SMTP level, by reason (rate, too_big).", []string{"reason"}, nil),
		extra: prometheus.NewDesc("penstock_reports_extra_recipients_total",
			"Addresses named in reports beyond what the report may act on (ignored).", nil, nil),
		dropped: prometheus.NewDesc("penstock_reports_kept_dropped_total",
			"Kept unreadable reports removed, oldest first, to stay within unparsed_max_files and unparsed_max_bytes.", nil, nil),
		notKept: prometheus.NewDesc("penstock_reports_not_kept_total",
			"Unreadable reports not kept, by reason (low_disk, too_big, disabled, error).", []string{"reason"}, nil),
	})
	reg.MustRegister(&outputGauges{src: d.Outputs,
		lag: prometheus.NewDesc("penstock_eventsout_lag", "Delivery log records an event output has not sent yet, by output.", []string{"output"}, nil),
		failures: prometheus.NewDesc("penstock_eventsout_failures_total",
			"Failed sends of an event output (each retried until taken), by output.", []string{"output"}, nil),
	})
	return m
}

type outputGauges struct {
	src           interface{ Status() []eventsout.Status }
	lag, failures *prometheus.Desc
}

func (o *outputGauges) Describe(ch chan<- *prometheus.Desc) { ch <- o.lag; ch <- o.failures }

func (o *outputGauges) Collect(ch chan<- prometheus.Metric) {
	if o.src == nil {
		return
	}
	for _, out := range o.src.Status() {
		ch <- prometheus.MustNewConstMetric(o.lag, prometheus.GaugeValue, float64(out.Lag), out.Name)
		ch <- prometheus.MustNewConstMetric(o.failures, prometheus.CounterValue, float64(out.Failures), out.Name)
	}
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// ObserveAck records one injection's acknowledgement latency.
func (m *Metrics) ObserveAck(d time.Duration) { m.ack.Observe(d.Seconds()) }

// ObserveDelivered records one delivery's time since reception.
func (m *Metrics) ObserveDelivered(d time.Duration) { m.toDelivery.Observe(d.Seconds()) }

// Run counts delivery-log records until ch closes.
func (m *Metrics) Run(ch <-chan *events.Record) {
	for r := range ch {
		m.Count(r)
	}
}

// Count counts one record.
func (m *Metrics) Count(r *events.Record) {
	rule := r.Rule
	switch r.Type {
	case events.Reception:
		m.injected.Inc()
	case events.Delivery:
		m.delivered.WithLabelValues(rule).Inc()
	case events.TransientFailure:
		m.deferred.WithLabelValues(rule, r.Reason).Inc()
	case events.Bounce:
		m.bounced.WithLabelValues(rule, r.Reason, r.Class).Inc()
	case events.Expiration:
		m.expired.Inc()
	case events.Suppressed:
		m.suppressed.Inc()
	case events.FlowControl:
		m.flowChange.WithLabelValues(r.State).Inc()
	}
}

type gauges struct {
	src                                                      Deps
	queued, conns, flow, local, spoolM, spoolR, spoolB, degr *prometheus.Desc
	flowSrc, opened, shared                                  *prometheus.Desc
	smtp                                                     smtpDescs
}

type smtpDescs struct {
	sessions, rejected, stress, stressed, delayed, throttled *prometheus.Desc
}

func (g *gauges) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{g.queued, g.conns, g.opened, g.shared, g.flow, g.flowSrc, g.local, g.spoolM, g.spoolR, g.spoolB, g.degr,
		g.smtp.sessions, g.smtp.rejected, g.smtp.stress, g.smtp.stressed, g.smtp.delayed, g.smtp.throttled} {
		ch <- d
	}
}

// collectSMTP reads the listener's counters, which live in smtpserver and
// only grow, hence constant metrics rather than counters of our own.
func (g *gauges) collectSMTP(ch chan<- prometheus.Metric) {
	if g.src.SMTP == nil {
		return
	}
	st := g.src.SMTP.Stats()
	d := g.smtp
	ch <- prometheus.MustNewConstMetric(d.sessions, prometheus.GaugeValue, float64(st.SessionsOpen))
	for reason, n := range st.Rejected {
		ch <- prometheus.MustNewConstMetric(d.rejected, prometheus.CounterValue, float64(n), reason)
	}
	ch <- prometheus.MustNewConstMetric(d.stress, prometheus.GaugeValue, b2f(st.Stressed))
	ch <- prometheus.MustNewConstMetric(d.stressed, prometheus.CounterValue, float64(st.StressEntered))
	ch <- prometheus.MustNewConstMetric(d.delayed, prometheus.CounterValue, float64(st.AuthDelayed))
	ch <- prometheus.MustNewConstMetric(d.throttled, prometheus.GaugeValue, float64(st.AuthThrottled))
}

func (g *gauges) Collect(ch chan<- prometheus.Metric) {
	byStatus, connsByRule := g.src.Queue.Gauges()
	for st, n := range byStatus {
		ch <- prometheus.MustNewConstMetric(g.queued, prometheus.GaugeValue, float64(n), st)
	}
	for rule, n := range connsByRule {
		ch <- prometheus.MustNewConstMetric(g.conns, prometheus.GaugeValue, float64(n), rule)
	}
	for rule, n := range g.src.Queue.ConnectionsOpened() {
		ch <- prometheus.MustNewConstMetric(g.opened, prometheus.CounterValue, float64(n), rule)
	}
	ch <- prometheus.MustNewConstMetric(g.shared, prometheus.CounterValue, float64(g.src.Queue.SessionsShared()))
	for st, n := range g.src.Flow.States() {
		ch <- prometheus.MustNewConstMetric(g.flow, prometheus.GaugeValue, float64(n), st)
	}
	for st, n := range g.src.Flow.SourceStates() {
		ch <- prometheus.MustNewConstMetric(g.flowSrc, prometheus.GaugeValue, float64(n), st)
	}
	local, _ := g.src.Flow.Local()
	ch <- prometheus.MustNewConstMetric(g.local, prometheus.GaugeValue, b2f(local))
	sp := g.src.Spool.Stats()
	ch <- prometheus.MustNewConstMetric(g.spoolM, prometheus.GaugeValue, float64(sp.Messages))
	ch <- prometheus.MustNewConstMetric(g.spoolR, prometheus.GaugeValue, float64(sp.Recipients))
	ch <- prometheus.MustNewConstMetric(g.spoolB, prometheus.GaugeValue, float64(sp.Bytes))
	d, ok := g.src.Quotas.(quota.Degrader)
	ch <- prometheus.MustNewConstMetric(g.degr, prometheus.GaugeValue, b2f(ok && d.Degraded()))
	g.collectSMTP(ch)
}

// reportCounters exposes the bounce listener's counters, kept by package
// reports, as Prometheus counters.
type reportCounters struct {
	src                                       interface{ Reports() reports.Stats }
	reports, refused, extra, dropped, notKept *prometheus.Desc
}

func (r *reportCounters) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{r.reports, r.refused, r.extra, r.dropped, r.notKept} {
		ch <- d
	}
}

func (r *reportCounters) Collect(ch chan<- prometheus.Metric) {
	if r.src == nil {
		return
	}
	st := r.src.Reports()
	c := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	if _, ok := st.Acted["verp"]; !ok {
		c(r.reports, 0, "acted", "verp") // the series exists before the first report
	}
	for how, n := range st.Acted {
		c(r.reports, n, "acted", how)
	}
	for why, n := range st.Ignored {
		c(r.reports, n, "ignored", why)
	}
	if _, ok := st.Refused["rate"]; !ok {
		c(r.refused, 0, "rate")
	}
	for why, n := range st.Refused {
		c(r.refused, n, why)
	}
	if _, ok := st.NotKept["low_disk"]; !ok {
		c(r.notKept, 0, "low_disk")
	}
	for why, n := range st.NotKept {
		c(r.notKept, n, why)
	}
	c(r.extra, st.ExtraRecipients)
	c(r.dropped, st.KeptDropped)
}

// labelCounters exposes a map of counts kept elsewhere as one counter
// per label value; seed is a label value whose series exists at 0 before
// its first count (so that dashboards and alerts find the metric).
type labelCounters struct {
	desc *prometheus.Desc
	read interface{ Counts() map[string]uint64 } // nil: only the seed, at 0
	seed string
}

func (l *labelCounters) Describe(ch chan<- *prometheus.Desc) { ch <- l.desc }

func (l *labelCounters) Collect(ch chan<- prometheus.Metric) {
	var counts map[string]uint64
	if l.read != nil {
		counts = l.read.Counts()
	}
	if _, ok := counts[l.seed]; !ok {
		ch <- prometheus.MustNewConstMetric(l.desc, prometheus.CounterValue, 0, l.seed)
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(l.desc, prometheus.CounterValue, float64(n), k)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
