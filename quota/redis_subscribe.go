package quota

import (
	"strings"

	"github.com/penstock-mta/penstock/redisbus"
)

// The Redis store's subscriptions, on the process's one bus: releases of
// other nodes wake the local waiters, and a rejoining node's notice makes
// this one renew at once.

func (r *Redis) releasePattern() string { return r.opts.Prefix + "release:*" }
func (r *Redis) rejoinChannel() string  { return r.opts.Prefix + "quota:rejoin" }

func (r *Redis) subscribe() error {
	relPrefix := r.opts.Prefix + "release:"
	err := r.bus.PSubscribe(r.releasePattern(), redisbus.Handler{
		Message: func(channel, _ string) {
			key, ok := strings.CutPrefix(channel, relPrefix)
			if !ok {
				return
			}
			r.mu.Lock()
			if ks := r.keys[key]; ks != nil {
				r.wakeLocked(ks)
			}
			r.mu.Unlock()
		},
		// (Re)subscribed: releases may have gone unseen.
		Subscribed: r.wakeAll,
		// A broken subscription is a sign of an outage: probe at once.
		Broken: func(error) { r.kickNow() },
	})
	if err != nil {
		return err
	}
	err = r.bus.Subscribe(r.rejoinChannel(), redisbus.Handler{
		Message: func(_, node string) {
			if node != r.opts.Node {
				r.kickNow() // a node rejoins: show it we are here
			}
		},
	})
	if err != nil {
		r.bus.PUnsubscribe(r.releasePattern())
	}
	return err
}

// unsubscribe stops the handlers (and the bus if the store made it).
func (r *Redis) unsubscribe() {
	if r.ownBus {
		r.bus.Close()
		return
	}
	r.bus.PUnsubscribe(r.releasePattern())
	r.bus.Unsubscribe(r.rejoinChannel())
}

func (r *Redis) wakeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ks := range r.keys {
		r.wakeLocked(ks)
	}
}
