package quota

import (
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The release subscription of the Redis store.

// subscribe wakes local waiters on other nodes' releases and renews at
// once when a node rejoins. An error on the subscription makes the loop
// probe Redis at once; go-redis reconnects and subscribes again.
func (r *Redis) subscribe() {
	defer r.wg.Done()
	backoff := 50 * time.Millisecond
	relPrefix := r.opts.Prefix + "release:"
	for r.ctx.Err() == nil {
		msg, err := r.ps.Receive(r.ctx)
		if r.ctx.Err() != nil {
			return
		}
		if err != nil {
			r.kickNow()
			t := time.NewTimer(backoff)
			select {
			case <-r.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		switch m := msg.(type) {
		case *redis.Message:
			if key, ok := strings.CutPrefix(m.Channel, relPrefix); ok {
				r.mu.Lock()
				if ks := r.keys[key]; ks != nil {
					r.wakeLocked(ks)
				}
				r.mu.Unlock()
			} else if m.Payload != r.opts.Node {
				r.kickNow() // a node rejoins: show it we are here
			}
		case *redis.Subscription:
			// (Re)subscribed: releases may have gone unseen.
			r.mu.Lock()
			for _, ks := range r.keys {
				r.wakeLocked(ks)
			}
			r.mu.Unlock()
		}
	}
}
