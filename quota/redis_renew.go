package quota

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/penstock-mta/penstock/membership"
)

// Renewal, membership and modes of the Redis store: one membership beat
// (membership.Registry.Beat) renews every lease of the node and reads the
// membership; failures switch the node to degraded, answers bring it back
// through rejoining.
//
// Every lease this node holds is (re)added with a new expiry: a connection
// open is a slot taken, even if its lease expired in Redis meanwhile
// (renewals late) or Redis lost it (restart). A lease released while the
// renewal was under way may come back for a moment (registered by a
// renewal that raced with its local release); the renewal removes it
// again.

func (r *Redis) epochNow() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.epoch
}

// renew runs one renewal and applies its result; false if Redis failed.
// Leases granted locally while it ran are registered by another round, at
// most three in a row.
func (r *Redis) renew() bool {
	for range 3 {
		again, ok := r.renewOnce()
		if !ok {
			return false
		}
		if !again {
			return true
		}
	}
	return true
}

func (r *Redis) renewOnce() (again, ok bool) {
	r.renewMu.Lock()
	r.mu.Lock()
	var leases []*redisLease
	var held []membership.Lease
	for key, ks := range r.keys {
		for l := range ks.leases {
			held = append(held, membership.Lease{Set: r.k("lease", key), Member: l.member})
			leases = append(leases, l)
		}
	}
	epoch, mode := r.epoch, r.mode.String()
	r.mu.Unlock()

	ctx, cancel := context.WithTimeout(r.ctx, r.opts.Timeout)
	send := r.mono()
	beat, err := r.members.Beat(ctx, epoch, mode, held)
	cancel()
	r.renewMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		if r.ctx.Err() == nil {
			r.failLocked(err)
		}
		return false, false
	}
	now, cur := beat.Now, beat.Epoch
	// alive: node -> {last beat, TTL}, in server ms.
	alive := make(map[string][2]int64, len(beat.Members))
	for _, m := range beat.Members {
		alive[m.Node] = [2]int64{m.LastSeen.UnixMilli(), m.TTL.Milliseconds()}
	}
	lostLeases := 0
	for i, l := range leases {
		if !beat.Found[i] && l.registered.Load() && beat.State == membership.EpochSame && !l.released.Load() {
			// Expired in Redis before we renewed it: the slot may have
			// gone to another node meanwhile.
			lostLeases++
		}
		l.registered.Store(true)
		if l.released.Load() {
			// Released while the renewal ran: make sure it is gone.
			r.addPendingLocked(l.key, l.member)
			continue
		}
		l.deadline.Store(int64(send + r.opts.LeaseTTL))
	}
	if lostLeases > 0 {
		r.log.Warn("cluster quotas: leases had expired in Redis before their renewal (renewals late by more than the lease TTL?); registered again",
			"node", r.opts.Node, "leases", lostLeases, "lease_ttl", r.opts.LeaseTTL)
	}
	first := !r.contact
	lost := beat.State == membership.EpochCreated || (beat.State == membership.EpochOther && r.epoch != "")
	r.contact = true
	r.epoch = cur
	r.lastErr = ""
	// Membership: nodes that renewed within their own TTL, and this one.
	live := []string{r.opts.Node}
	for _, m := range beat.Members {
		r.peerTTL[m.Node] = m.TTL.Milliseconds()
		if m.Node != r.opts.Node && m.Live {
			live = append(live, m.Node)
		}
	}
	sort.Strings(live)
	// The nodes known before this renewal (frozen while degraded) and the
	// live ones now: those a rejoin waits for.
	known := append(append([]string(nil), r.peers...), live...)
	r.peers = live
	switch {
	case r.mode == modeDegraded || first:
		r.enterRejoinLocked(now, known, alive, lost, first)
	case lost:
		// Redis lost its data under us: our leases are back in it as of
		// this renewal; others' come back when they renew.
		r.log.Error("CLUSTER QUOTAS: Redis lost its data (restarted without persistence?); leases registered again, no new connection until the others have",
			"node", r.opts.Node, "fence", r.fence)
		r.enterRejoinLocked(now, known, alive, true, false)
	case r.mode == modeRejoining:
		for name, giveUp := range r.waitFor {
			if a, ok := alive[name]; (ok && a[0] > r.rejoinAt) || now > giveUp {
				delete(r.waitFor, name)
			}
		}
		if len(r.waitFor) == 0 && r.mono() >= r.fenceEnd {
			r.setModeLocked(modeShared)
			r.log.Warn("cluster quotas: shared mode", "node", r.opts.Node, "nodes", len(r.peers))
		}
	}
	if r.mode == modeRejoining {
		// Shares while rejoining count the nodes not back yet: they may
		// still send on their degraded shares.
		for name := range r.waitFor {
			if i := sort.SearchStrings(r.peers, name); i == len(r.peers) || r.peers[i] != name {
				r.peers = append(r.peers, name)
				sort.Strings(r.peers)
			}
		}
	}
	if len(r.pending) > 0 && r.mode != modeDegraded {
		r.flushPendingLocked()
	}
	r.sweepLocked()
	// Leases granted while the script ran are not registered yet.
	if r.mode != modeShared {
		for _, ks := range r.keys {
			for l := range ks.leases {
				if !l.registered.Load() {
					return true, true
				}
			}
		}
	}
	return false, true
}

// enterRejoinLocked starts rejoining after this renewal registered our
// leases: wait for every node we knew to renew after now.
func (r *Redis) enterRejoinLocked(now int64, known []string, alive map[string][2]int64, lost, first bool) {
	prev := r.mode
	if prev == modeShared {
		r.episode++ // the local limiters start afresh, with no burst
	}
	r.setModeLocked(modeRejoining)
	r.rejoinAt = now
	r.waitFor = map[string]int64{}
	for _, name := range known {
		if name == r.opts.Node {
			continue
		}
		ttl := r.peerTTL[name]
		if ttl <= 0 {
			ttl = r.opts.LeaseTTL.Milliseconds()
		}
		r.waitFor[name] = now + ttl + 1000
	}
	for name, a := range alive {
		if name != r.opts.Node && now-a[0] <= 10*a[1] {
			if _, ok := r.waitFor[name]; !ok {
				r.waitFor[name] = now + a[1] + 1000
			}
		}
	}
	if lost {
		r.fenceEnd = max(r.fenceEnd, r.mono()+r.fence)
	} else if prev == modeDegraded {
		// Redis kept its data: shared-mode leases are all in it (or no
		// longer valid), so the take script protects them; only the share
		// holds new connections until the others are back.
		r.fenceEnd = 0
	}
	switch {
	case first && lost:
		r.log.Warn("cluster quotas: no quota epoch in Redis (a new cluster, or Redis lost its data): no new connection for the lease TTL",
			"node", r.opts.Node, "fence", r.fence)
	case first:
		r.log.Info("cluster quotas: joining", "node", r.opts.Node, "nodes", len(r.peers))
	case prev != modeRejoining:
		r.log.Warn("cluster quotas: Redis answers again, rejoining", "node", r.opts.Node,
			"waiting_for", len(r.waitFor), "data_lost", lost)
	}
	// Ask the others to renew now rather than within lease_ttl/3.
	node := r.opts.Node
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		ctx, cancel := context.WithTimeout(r.ctx, r.opts.Timeout)
		defer cancel()
		r.c.Publish(ctx, r.opts.Prefix+"quota:rejoin", node)
	}()
	r.kickNow()
}

func (r *Redis) setModeLocked(m mode) {
	if r.mode == m {
		return
	}
	r.mode = m
	r.since = time.Now()
	close(r.changed)
	r.changed = make(chan struct{})
	for _, ks := range r.keys {
		r.wakeLocked(ks) // limits changed: let waiters ask again
	}
}

// failLocked switches to degraded mode on a Redis failure.
func (r *Redis) failLocked(err error) {
	r.lastErr = err.Error()
	if r.mode == modeDegraded {
		return
	}
	r.setModeLocked(modeDegraded)
	r.episode++
	r.fenceEnd = max(r.fenceEnd, r.mono()+r.fence)
	for _, rk := range r.rates {
		rk.tokens = 0
	}
	r.log.Error("CLUSTER QUOTAS DEGRADED: Redis unreachable; each quota is divided by the live nodes last seen, no new connection for the lease TTL",
		"node", r.opts.Node, "err", err, "nodes", len(r.peers), "members", strings.Join(r.peers, ","), "fence", r.fence)
}

// epochLostLocked handles a take that found another epoch: Redis lost its
// data. Degraded until the renewal registers our leases again.
func (r *Redis) epochLostLocked() {
	r.failLocked(errors.New("Redis lost its data (quota epoch changed)"))
	r.kickNow()
}

func (r *Redis) kickNow() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *Redis) flushPendingLocked() {
	rel := r.pending
	r.pending = nil
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		ctx, cancel := context.WithTimeout(r.ctx, r.opts.Timeout)
		defer cancel()
		_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, pr := range rel {
				p.ZRem(ctx, r.k("lease", pr.key), pr.member)
				p.Publish(ctx, r.k("release", pr.key), "1")
			}
			return nil
		})
		if err != nil && r.ctx.Err() == nil {
			r.mu.Lock()
			for _, pr := range rel {
				r.addPendingLocked(pr.key, pr.member)
			}
			r.mu.Unlock()
		}
	}()
}

// sweepLocked forgets keys that hold nothing.
func (r *Redis) sweepLocked() {
	now := r.mono()
	for k, ks := range r.keys {
		if len(ks.leases) == 0 && ks.busy == 0 && ks.wake == nil {
			delete(r.keys, k)
		}
	}
	for k, rk := range r.rates {
		if (rk.tokens == 0 || now >= rk.expires) && rk.tat <= now && (rk.next.IsZero() || time.Now().After(rk.next)) {
			delete(r.rates, k)
		}
	}
}

func (r *Redis) runInts(ctx context.Context, s *redis.Script, keys []string, args ...any) ([]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	v, err := s.Run(ctx, r.c, keys, args...).Int64Slice()
	if err != nil {
		return nil, err
	}
	if len(v) != 2 {
		return nil, fmt.Errorf("quota: script answered %v", v)
	}
	return v, nil
}

// loop renews every lease_ttl/3 in shared mode, every 200 ms while
// rejoining (to see the others come back) and probes every ProbeEvery
// when degraded.
func (r *Redis) loop() {
	defer r.wg.Done()
	t := time.NewTimer(r.nextRenewal())
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		case <-r.kick:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		}
		r.renew()
		t.Reset(r.nextRenewal())
	}
}

func (r *Redis) nextRenewal() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch r.mode {
	case modeDegraded:
		return r.opts.ProbeEvery
	case modeRejoining:
		return 200 * time.Millisecond
	}
	return r.opts.LeaseTTL / 3
}
