package mta

import (
	"github.com/penstock-mta/penstock/metrics"
	"github.com/penstock-mta/penstock/quota"
	"github.com/penstock-mta/penstock/reports"
)

// metricsSource reads the gauges of package metrics from the running parts.
type metricsSource struct{ m *MTA }

func (s metricsSource) Queues() (byStatus, connsByRule map[string]int) { return s.m.Queue.Gauges() }

func (s metricsSource) FlowStates() map[string]int       { return s.m.Flow.States() }
func (s metricsSource) FlowSourceStates() map[string]int { return s.m.Flow.SourceStates() }
func (s metricsSource) LocalProblem() bool {
	on, _ := s.m.Flow.Local()
	return on
}
func (s metricsSource) Spool() (int64, int64, int64) {
	st := s.m.Spool.Stats()
	return st.Messages, st.Recipients, st.Bytes
}
func (s metricsSource) QuotaDegraded() bool {
	if d, ok := s.m.Quotas.(quota.Degrader); ok {
		return d.Degraded()
	}
	return false
}

func (s metricsSource) SMTP() (metrics.SMTPStats, bool) {
	if s.m.smtp == nil {
		return metrics.SMTPStats{}, false
	}
	st := s.m.smtp.Stats()
	return metrics.SMTPStats{SessionsOpen: st.SessionsOpen, Rejected: st.Rejected, Stressed: st.Stressed,
		StressEntered: st.StressEntered, AuthDelayed: st.AuthDelayed, AuthThrottled: st.AuthThrottled}, true
}

func (s metricsSource) Reports() reports.Stats { return s.m.Reports() }

func (s metricsSource) DKIM() map[string]uint64 { return s.m.dkim.Counts() }

func (s metricsSource) TLS() map[string]uint64 { return s.m.tlsrpt.Counts() }
