package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/eventsout"
	"github.com/penstock-mta/penstock/flow"
	"github.com/penstock-mta/penstock/smtpserver"
	"github.com/penstock-mta/penstock/spool"
)

// parts is every part a node has, with fixed readings.
type parts struct{}

func (parts) Gauges() (map[string]int, map[string]int) {
	return map[string]int{"Messages queued (connection quotas met)": 7}, map[string]int{"gmail": 3}
}
func (parts) ConnectionsOpened() map[string]uint64 { return map[string]uint64{"gmail": 41} }
func (parts) SessionsShared() uint64               { return 17 }
func (parts) States() map[string]int               { return map[string]int{flow.Backoff: 2} }
func (parts) SourceStates() map[string]int         { return map[string]int{flow.Normal: 4} }
func (parts) Local() (bool, flow.LocalProblem)     { return true, flow.LocalProblem{} }
func (parts) Stats() spool.Stats                   { return spool.Stats{Messages: 5, Recipients: 9, Bytes: 4096} }
func (parts) Degraded() bool                       { return true }
func (parts) Counts() map[string]uint64            { return map[string]uint64{"unsigned_no_key": 1} }
func (parts) Status() []eventsout.Status {
	return []eventsout.Status{{Name: "hook", Lag: 12, Failures: 2}}
}
func (smtpParts) Stats() smtpserver.Stats { return smtpserver.Stats{SessionsOpen: 6} }

type smtpParts struct{}

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

func TestGaugesReadTheParts(t *testing.T) {
	p := parts{}
	m := New(Deps{Queue: p, Flow: p, Spool: p, Quotas: p, SMTP: smtpParts{}, Outputs: p, DKIM: p, TLS: p})
	m.Count(&events.Record{Type: events.Delivery, Rule: "gmail"})
	out := scrape(t, m)
	for _, want := range []string{
		`penstock_queue_recipients{status="Messages queued (connection quotas met)"} 7`,
		`penstock_queue_connections{rule="gmail"} 3`,
		`penstock_queue_connections_opened_total{rule="gmail"} 41`,
		`penstock_queue_sessions_shared_total 17`,
		`penstock_flow_sites{state="backoff"} 2`,
		`penstock_flow_sources{state="normal"} 4`,
		`penstock_flow_local_problem 1`,
		`penstock_spool_messages 5`, `penstock_spool_recipients 9`, `penstock_spool_bytes 4096`,
		`penstock_quota_degraded 1`,
		`penstock_smtpserver_sessions 6`,
		`penstock_dkim_messages_total{result="signed"} 0`, `penstock_dkim_messages_total{result="unsigned_no_key"} 1`,
		`penstock_tls_sessions_total{result="success"} 0`,
		`penstock_eventsout_lag{output="hook"} 12`, `penstock_eventsout_failures_total{output="hook"} 2`,
		`penstock_delivery_delivered_total{rule="gmail"} 1`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("no %q in the scrape", want)
		}
	}
}

// A node without the optional parts (no injection listener, no bounce
// listener, no outputs, a quota store that cannot degrade) scrapes
// without their series and without failing.
func TestOptionalPartsMissing(t *testing.T) {
	p := parts{}
	out := scrape(t, New(Deps{Queue: p, Flow: p, Spool: p, Quotas: struct{}{}}))
	for _, absent := range []string{"penstock_smtpserver_sessions", "penstock_eventsout_lag{", "penstock_reports_total{"} {
		if strings.Contains(out, absent) {
			t.Errorf("%s in the scrape of a node without it", absent)
		}
	}
	for _, want := range []string{"penstock_quota_degraded 0", `penstock_dkim_messages_total{result="signed"} 0`} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("no %q in the scrape", want)
		}
	}
}
