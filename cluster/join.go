package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/flow"
	"github.com/penstock-mta/penstock/quota"
)

// Joined is this node in a cluster: the shared quota store (quota.Redis:
// leases, shared GCRA, degraded mode when Redis is away) together with the
// parts of the cluster it keeps alive, so that closing it at shutdown stops
// them all: the heartbeat and flow bridge first, then the leases, then the
// connection to Redis.
type Joined struct {
	*quota.Redis
	node   *Node
	client *redis.Client
}

// Close leaves the cluster: no heartbeat, leases given back.
func (j *Joined) Close() error {
	return errors.Join(j.node.Close(), j.Redis.Close(), j.client.Close())
}

// PublishFlow sends a local flow-control change to the other nodes.
func (j *Joined) PublishFlow(ch flow.Change) { j.node.PublishFlow(ch) }

// Join connects to the [cluster] Redis, opens the shared quota store and
// starts this node's heartbeat (with its sources, "name ip") and flow
// bridge: the other nodes' flow changes are adopted by fc, and fc's error
// windows are shared (errors spread over nodes add up toward the
// thresholds). Nothing here touches the spool: mail is accepted and kept
// whether Redis answers or not.
func Join(cc config.Cluster, sources []string, started time.Time, fc *flow.Controller, logger *slog.Logger) (*Joined, error) {
	client, err := Dial(cc.Redis)
	if err != nil {
		return nil, err
	}
	store, err := quota.NewRedis(client, quota.RedisOptions{Node: cc.Node, LeaseTTL: time.Duration(cc.LeaseTTL), Logger: logger})
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("node %q: %w", cc.Node, err)
	}
	fc.ShareWindows()
	node, err := Start(client, Options{
		Node: cc.Node, Sources: sources, Started: started, Logger: logger,
		Mode:    func() string { return store.State().Mode },
		Adopt:   fc.Adopt,
		Windows: fc,
	})
	if err != nil {
		store.Close()
		client.Close()
		return nil, err
	}
	st := store.State()
	logger.Info("cluster mode: quotas and flow control shared through Redis", "redis", client.Options().Addr,
		"node", cc.Node, "lease_ttl", time.Duration(cc.LeaseTTL), "quota_mode", st.Mode, "nodes", len(st.Nodes))
	return &Joined{Redis: store, node: node, client: client}, nil
}
