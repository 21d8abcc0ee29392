package mta

import (
	"github.com/penstock-mta/penstock/config"
)

// setupCluster replaces the in-process quota store and links flow control
// to the other nodes when [cluster] redis is set. Without it nothing
// changes: quotas and flow state stay in-process.
func setupCluster(m *MTA, cfg *config.Config) error {
	if cfg.Cluster.Redis == "" {
		return nil
	}
	m.logger.Warn("[cluster] redis is set but cluster mode is not built yet: quotas stay in-process")
	return nil
}
