package quota

import (
	"context"
	_ "embed"
	"time"
)

// Message rate of the Redis store: the GCRA of Local in one Lua script,
// batched for busy keys, with a local limiter in degraded mode.

// gcraScriptSrc: KEYS: tat, epoch. ARGV: T us, tau us, tokens wanted, epoch.
// Grants up to the tokens wanted that fit the tolerance and returns
// {granted, retry us}, or {-1, 0} when the epoch is not ours.
//
//go:embed lua/gcra.lua
var gcraScriptSrc string

// TakeMessage implements Store.
func (r *Redis) TakeMessage(ctx context.Context, key string, perHour int) (bool, time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return false, 0, err
	}
	if perHour <= 0 {
		return true, 0, nil
	}
	r.mu.Lock()
	rk := r.rates[key]
	if rk == nil {
		rk = &rateKey{want: 1}
		r.rates[key] = rk
	}
	if rk.perHour != perHour {
		rk.perHour, rk.tokens = perHour, 0 // a new limit: batches of the old one go
	}
	now := r.mono()
	switch r.mode {
	case modeDegraded:
		defer r.mu.Unlock()
		ok, retry := r.takeLocalLocked(rk, perHour, now)
		return ok, retry, nil
	case modeRejoining:
		if ok, retry := r.takeLocalLocked(rk, perHour, now); !ok {
			r.mu.Unlock()
			return false, retry, nil
		}
	default:
		if rk.tokens > 0 {
			if now < rk.expires {
				rk.tokens--
				rk.want = min(rk.want*2, r.batch(perHour)) // demand used the batch up
				r.mu.Unlock()
				return true, 0, nil
			}
			rk.tokens = 0
			rk.want = max(1, rk.want/2) // tokens expired unused: smaller batches
		}
	}
	m := r.mode
	want := 1
	if m == modeShared {
		want = min(rk.want, r.batch(perHour))
	}
	r.mu.Unlock()

	t := interval(perHour)
	tUS := (int64(t) + 999) / 1000 // round up: never faster
	b := Burst(perHour)
	tau := tUS * int64(b-1)
	maxB := r.batch(perHour)
	tauR := tau
	if maxB > 1 {
		tauR = tUS * int64(maxB-1) // tau' = (b-1)T: see the type comment
	}
	delta := time.Duration(tau-tauR) * time.Microsecond
	send := r.mono()
	res, err := r.runInts(ctx, r.scripts.gcra, []string{r.k("tat", key), r.members.EpochKey()}, tUS, tauR, want, r.epochNow())
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		if ctx.Err() != nil {
			return false, 0, ctx.Err()
		}
		r.failLocked(err)
		if m == modeRejoining {
			return true, 0, nil // the local share allowed it already
		}
		ok, retry := r.takeLocalLocked(rk, perHour, r.mono())
		return ok, retry, nil
	}
	switch {
	case res[0] == -1:
		r.epochLostLocked()
		if m == modeRejoining {
			return true, 0, nil
		}
		ok, retry := r.takeLocalLocked(rk, perHour, r.mono())
		return ok, retry, nil
	case res[0] == 0:
		retry := time.Duration(res[1]) * time.Microsecond
		rk.next = time.Now().Add(retry)
		return false, max(retry, time.Microsecond), nil
	}
	if extra := int(res[0]) - 1; extra > 0 && delta > 0 && r.mode == modeShared {
		exp := send + delta
		if rk.tokens > 0 && rk.expires < exp {
			exp = rk.expires // one expiry for all: the earliest
		}
		rk.tokens += extra
		rk.expires = exp
	}
	rk.next = time.Time{}
	return true, 0, nil
}

// batch is the most tokens one round trip may take for perHour: up to
// MaxBatch and half the burst, so the Redis tolerance keeps room.
func (r *Redis) batch(perHour int) int {
	if perHour < r.opts.BatchFrom {
		return 1
	}
	return max(1, min(r.opts.MaxBatch, Burst(perHour)/2))
}

// takeLocalLocked is the degraded limiter: GCRA on this node's share of
// the rate (perHour ÷ nodes, burst ÷ nodes), starting each degraded
// episode with no burst so the switch adds nothing to the window.
func (r *Redis) takeLocalLocked(rk *rateKey, perHour int, now time.Duration) (bool, time.Duration) {
	if !r.contact {
		return false, r.opts.ProbeEvery
	}
	n := max(1, len(r.peers))
	ph := max(1, perHour/n)
	t := interval(ph)
	b := max(1, Burst(perHour)/n)
	tau := t * time.Duration(b-1)
	if rk.episode != r.episode {
		rk.episode = r.episode
		rk.tat = now + tau + t
		rk.tokens = 0
	}
	tat := max(rk.tat, now)
	if wait := tat - now - tau; wait > 0 {
		rk.next = time.Now().Add(wait)
		return false, wait
	}
	rk.tat = tat + t
	return true, 0
}
