// Package cluster links Penstock nodes that send from the same public IPs
// through one Redis (docs/ARCHITECTURE.md §6): it joins a node to the
// cluster, bridges flow-control decisions, and reads the status. The
// quotas themselves (connection leases, the shared GCRA, degraded mode)
// are quota.Redis; who is alive is package membership; the one pub/sub
// connection of the node is package redisbus. This package never counts
// a quota.
//
// Join assembles a node: one Redis client (its connections named
// penstock-<node>), one bus, the quota store, whose lease renewal is the
// node's membership beat (its sources and start time ride along), and the
// flow bridge. Status reads the membership record (membership.Read: the
// same record and liveness rule as quota's degraded mode) and the lease
// sets of quota.Redis (<prefix>lease:<key>, members "<node>#<id>", scores
// the expiry), and counts the live leases per node and MX rule: what
// `penstock cluster status` prints.
//
// Flow control. Each local state change (flow.Options.OnChange) is queued
// to one publisher goroutine, which writes it into <prefix>flow:state
// (site -> latest change, deleted when the site is back to normal) and
// publishes it on <prefix>flow. The bridge's handler on the bus applies
// the other nodes' changes with flow.Controller.Adopt, which does not echo
// them, so an error storm seen by one node puts the site in backoff on all
// of them within a round trip. When the subscription (re)starts, the node
// adopts the states in <prefix>flow:state, so it also learns what was
// decided while it was away or disconnected. What is shared is the
// decision, not the error windows: a node that adopts a backoff recovers
// on its own evidence (see the README section).
//
// Suspensions. Bridge.ShareSuspensions links the queue's tenant and
// campaign suspensions: a local change is kept pending and sent by a
// script that counts the hash's version up, writes <prefix>suspended (key
// -> who, deleted on resume) and publishes the change with its version on
// the channel of that name; a change stays pending (retried every 5 s)
// until Redis has it. The other nodes apply it unless they hold a newer
// change of that key (theirs pending, or a higher version). At each
// (re)subscription a node sends what is pending, then adopts the hash with
// the changes made meanwhile on top. A token field in the hash, set by the
// first node to find it missing, tells a Redis that lost its data: a node
// that creates it or finds another token than the one it last read gives
// its own suspensions back instead of resuming them.
//
// The package never touches the spool, and the queue only through the
// Suspensions interface: Redis down means nothing more than stale
// membership, unshared flow decisions and suspensions kept per node.
package cluster

import (
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/penstock-mta/penstock/membership"
)

// DefaultPrefix starts every Redis key and channel of Penstock.
const DefaultPrefix = membership.DefaultPrefix

// Dial returns a client for a [cluster] redis URL
// ("redis://host:port/db", "rediss://..." or "unix://..."), tuned for a
// quota store: no retries (a failure is an outage to react to, not to
// hide), one dial attempt, and 2 s timeouts. It does not connect yet.
func Dial(url string) (*redis.Client, error) { return dial(url, "") }

// ClientName is the name of a node's Redis connections (CLIENT LIST).
func ClientName(node string) string { return "penstock-" + node }

func dial(url, name string) (*redis.Client, error) {
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
	if name != "" {
		opt.ClientName = name
	}
	return redis.NewClient(opt), nil
}
