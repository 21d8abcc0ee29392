package mta

import (
	"path/filepath"
	"regexp"

	"github.com/penstock-mta/penstock/cluster"
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/flow"
	"github.com/penstock-mta/penstock/queue"
	"github.com/penstock-mta/penstock/warmup"
)

// setupWarmup builds the warm-up tracker of the [[warmup]] tables (none:
// nil, and the queue gates nothing). Its state is in the spool directory;
// in a cluster its counts are in Redis.
func (m *MTA) setupWarmup(cfg *config.Config, fc flow.Config) (queue.Warmup, error) {
	plans := warmup.Plans(cfg)
	if len(plans) == 0 {
		return nil, nil
	}
	var res []*regexp.Regexp
	for _, p := range fc.Patterns {
		res = append(res, p.Match)
	}
	deps := warmup.Deps{Now: m.opts.WarmupNow, Day: m.opts.WarmupDay, Logger: m.logger,
		Path: filepath.Join(cfg.Server.SpoolDir, "warmup.json"), Throttle: warmup.Throttles(res)}
	if j, ok := m.Quotas.(*cluster.Joined); ok {
		deps.Shared = warmup.NewRedis(j.Client(), cluster.DefaultPrefix)
		deps.Nodes = func() int { return len(j.State().Nodes) }
	}
	t, err := warmup.New(plans, deps)
	if err != nil {
		return nil, err
	}
	m.warmup = t
	return t, nil
}

// Warmup is each warming (source, group) pair's state; nil without [[warmup]].
func (m *MTA) Warmup() []warmup.Status {
	if m.warmup == nil {
		return nil
	}
	return m.warmup.Statuses()
}
