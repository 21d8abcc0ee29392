package mta

import (
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/penstock-mta/penstock/cluster"
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/quota"
)

// clusterStore is the Redis quota store together with the parts of the
// cluster it keeps alive, so that closing the store (Shutdown) stops them
// all: the heartbeat and flow bridge first, then the leases, then the
// connection to Redis.
type clusterStore struct {
	*quota.Redis
	node   *cluster.Node
	client *redis.Client
}

// Close leaves the cluster: no heartbeat, leases given back.
func (s *clusterStore) Close() error {
	return errors.Join(s.node.Close(), s.Redis.Close(), s.client.Close())
}

// setupCluster replaces the in-process quota store and links flow control
// to the other nodes when [cluster] redis is set. Without it nothing
// changes: quotas and flow state stay in-process.
//
// With it: quotas are a quota.Redis (leases, shared GCRA, degraded mode
// when Redis is away); the node heartbeats into Redis with its sources;
// each local flow-control change is published and the others' changes
// are adopted. Nothing here touches the spool: mail is accepted and kept
// whether Redis answers or not.
func setupCluster(m *MTA, cfg *config.Config) error {
	cc := cfg.Cluster
	if cc.Redis == "" {
		return nil
	}
	client, err := cluster.Dial(cc.Redis)
	if err != nil {
		return err
	}
	store, err := quota.NewRedis(client, quota.RedisOptions{Node: cc.Node, LeaseTTL: time.Duration(cc.LeaseTTL), Logger: m.logger})
	if err != nil {
		client.Close()
		return fmt.Errorf("node %q: %w", cc.Node, err)
	}
	var sources []string
	for _, s := range cfg.Sources {
		sources = append(sources, s.Name+" "+s.IP)
	}
	node, err := cluster.Start(client, cluster.Options{
		Node: cc.Node, Sources: sources, Started: m.opts.Now(), Logger: m.logger,
		Mode:  func() string { return store.State().Mode },
		Adopt: m.Flow.Adopt,
	})
	if err != nil {
		store.Close()
		client.Close()
		return err
	}
	// Local flow-control changes go to the other nodes too.
	m.flowHooks = append(m.flowHooks, node.PublishFlow)
	m.Quotas = &clusterStore{Redis: store, node: node, client: client}
	st := store.State()
	m.logger.Info("cluster mode: quotas and flow control shared through Redis", "redis", client.Options().Addr,
		"node", cc.Node, "lease_ttl", time.Duration(cc.LeaseTTL), "quota_mode", st.Mode, "nodes", len(st.Nodes))
	return nil
}
