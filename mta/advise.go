package mta

import (
	"context"
	"time"

	"github.com/penstock-mta/penstock/advisor"
)

// Advise runs the advisor on this node's delivery log for the last since,
// against the rules in force (api.Node). The log is flushed first so that
// the last records count.
func (m *MTA) Advise(ctx context.Context, rule string, since time.Duration) (*advisor.Report, error) {
	cfg := m.Config()
	rules, err := cfg.RuleSet()
	if err != nil {
		return nil, err
	}
	m.Log.Flush()
	now := m.opts.Now()
	return advisor.Analyze(ctx, rules, cfg.Server.LogDir, advisor.Options{Since: now.Add(-since), Until: now, Rule: rule})
}

// sampleWaits logs the advisor's QuotaWait sample (which sites' mail waits
// on a connection or hourly quota) on the ticks that fall on a multiple of
// advisor.SampleEvery; a tick the ticker drops only costs one sample.
func (m *MTA) sampleWaits(tick time.Time) {
	if tick.Unix()%int64(advisor.SampleEvery/time.Second) != 0 {
		return
	}
	for _, r := range advisor.WaitRecords(m.Queue.Sites(), m.opts.Now()) {
		m.Log.Write(&r)
	}
}
