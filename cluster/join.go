package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/flow"
	"github.com/penstock-mta/penstock/membership"
	"github.com/penstock-mta/penstock/quota"
	"github.com/penstock-mta/penstock/redisbus"
)

// Joined is this node in a cluster: the shared quota store (quota.Redis:
// leases, shared GCRA, membership, degraded mode when Redis is away)
// together with the parts of the cluster it keeps alive, so that closing
// it at shutdown stops them all: the flow bridge first, then the quota
// store (leases given back, membership left), then the bus and the
// connection to Redis.
type Joined struct {
	*quota.Redis
	bridge *Bridge
	bus    *redisbus.Bus
	client *redis.Client
}

// Close leaves the cluster: leases given back, membership left.
func (j *Joined) Close() error {
	return errors.Join(j.bridge.Close(), j.Redis.Close(), j.bus.Close(), j.client.Close())
}

// Client is the connection to the cluster's Redis, for the other shared
// state (warm-up counts).
func (j *Joined) Client() *redis.Client { return j.client }

// PublishFlow sends a local flow-control change to the other nodes.
func (j *Joined) PublishFlow(ch flow.Change) { j.bridge.PublishFlow(ch) }

// ShareSuspensions shares the queue's tenant and campaign suspensions
// with the other nodes (Bridge.ShareSuspensions).
func (j *Joined) ShareSuspensions(q Suspensions) error { return j.bridge.ShareSuspensions(q) }

// Adopted returns how many flow changes of other nodes this node applied.
func (j *Joined) Adopted() int64 { return j.bridge.Adopted() }

// Join connects to the [cluster] Redis and opens the shared quota store,
// whose renewals are this node's membership beats (with its sources,
// "name ip"), and the flow bridge, both listening on one bus: the other
// nodes' flow changes go to adopt (flow.Controller.Adopt), and windows'
// error windows are shared (errors spread over nodes add up toward the
// thresholds; nil: not shared). Nothing here touches the spool: mail is
// accepted and kept whether Redis answers or not.
func Join(cc config.Cluster, sources []string, started time.Time, adopt func(flow.Change), windows Windows, logger *slog.Logger) (*Joined, error) {
	client, err := dial(cc.Redis, ClientName(cc.Node))
	if err != nil {
		return nil, err
	}
	bus := redisbus.New(client, logger)
	store, err := quota.NewRedis(client, quota.RedisOptions{Node: cc.Node, LeaseTTL: time.Duration(cc.LeaseTTL),
		Info: membership.Info{Started: started, Sources: sources}, Bus: bus, Logger: logger})
	if err != nil {
		bus.Close()
		client.Close()
		return nil, fmt.Errorf("node %q: %w", cc.Node, err)
	}
	if windows != nil {
		windows.ShareWindows()
	}
	bridge, err := StartBridge(client, bus, BridgeOptions{Node: cc.Node, Adopt: adopt, Windows: windows, Logger: logger})
	if err != nil {
		store.Close()
		bus.Close()
		client.Close()
		return nil, err
	}
	st := store.State()
	logger.Info("cluster mode: quotas and flow control shared through Redis", "redis", client.Options().Addr,
		"node", cc.Node, "lease_ttl", time.Duration(cc.LeaseTTL), "quota_mode", st.Mode, "nodes", len(st.Nodes))
	return &Joined{Redis: store, bridge: bridge, bus: bus, client: client}, nil
}
