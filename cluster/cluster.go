// Package cluster links Penstock nodes that send from the same public IPs
// through one Redis (docs/ARCHITECTURE.md §6): who is alive, and what flow control
// decided. The quotas themselves (connection leases, the shared GCRA,
// degraded mode) are quota.Redis; this package never counts a quota.
//
// Membership. Each node writes a heartbeat every second into the hash
// <prefix>nodes: field = node name, value = "<Redis server ms> <JSON>"
// with its start time, its sources and its quota mode. A node whose
// heartbeat is older than the membership TTL (3 s by default) is gone;
// entries older than an hour are dropped. Server time, not the nodes'
// clocks, decides liveness. Status reads the heartbeats and the lease sets
// of quota.Redis (<prefix>lease:<key>, members "<node>#<id>", scores the
// expiry) and counts the live leases per node and MX rule: what `penstock
// cluster status` prints.
//
// Flow control. Each local state change (flow.Options.OnChange) is queued
// to one publisher goroutine, which writes it into <prefix>flow:state
// (site -> latest change, deleted when the site is back to normal) and
// publishes it on <prefix>flow. One subscriber per node applies the other
// nodes' changes with flow.Controller.Adopt, which does not echo them, so
// an error storm seen by one node puts the site in backoff on all of them
// within a round trip. When the subscription (re)starts, the node adopts
// the states in <prefix>flow:state, so it also learns what was decided
// while it was away or disconnected. What is shared is the decision, not
// the error windows: a node that adopts a backoff recovers on its own
// evidence (see the README section).
//
// The package never touches the spool or the queue: Redis down means
// nothing more than stale membership and unshared flow decisions.
package cluster

import (
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultPrefix starts every Redis key and channel of Penstock.
const DefaultPrefix = "penstock:"

// Dial returns a client for a [cluster] redis URL
// ("redis://host:port/db", "rediss://..." or "unix://..."), tuned for a
// quota store: no retries (a failure is an outage to react to, not to
// hide), one dial attempt, and 2 s timeouts. It does not connect yet.
func Dial(url string) (*redis.Client, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("[cluster] redis: %w", err)
	}
	opt.MaxRetries = -1
	opt.DialerRetries = 1
	opt.DialTimeout = 2 * time.Second
	opt.ReadTimeout = 2 * time.Second
	opt.WriteTimeout = 2 * time.Second
	opt.ContextTimeoutEnabled = true
	opt.Protocol = 2 // RESP2: every Redis since 2.6 speaks it, scripts answer the same
	opt.DisableIdentity = true
	return redis.NewClient(opt), nil
}
