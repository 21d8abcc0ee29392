package mta

import (
	"github.com/penstock-mta/penstock/cluster"
	"github.com/penstock-mta/penstock/config"
)

// setupCluster replaces the in-process quota store and links flow control
// to the other nodes when [cluster] redis is set (cluster.Join). Without it
// nothing changes: quotas and flow state stay in-process. Closing the quota
// store at Shutdown leaves the cluster.
func setupCluster(m *MTA, cfg *config.Config) error {
	if cfg.Cluster.Redis == "" {
		return nil
	}
	var sources []string
	for _, s := range cfg.Sources {
		sources = append(sources, s.Name+" "+s.IP)
	}
	j, err := cluster.Join(cfg.Cluster, sources, m.opts.Now(), m.Flow.Adopt, m.Flow, m.logger)
	if err != nil {
		return err
	}
	// Local flow-control changes go to the other nodes too.
	m.flowLog.Publish = j.PublishFlow
	m.Quotas = j
	return nil
}

// shareSuspensions shares the queue's tenant and campaign suspensions
// through the cluster's Redis, when there is one.
func shareSuspensions(m *MTA) error {
	if j, ok := m.Quotas.(*cluster.Joined); ok {
		return j.ShareSuspensions(m.Queue)
	}
	return nil
}
