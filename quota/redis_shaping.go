package quota

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// daySrc: the daily sliding window of the package comment in one hash
// (field = bucket number, value = count). KEYS: day hash, epoch. ARGV:
// bucket width s, buckets before the current one, limit, epoch. Returns
// {1, 0} when counted, {0, ms until the count drops under the limit} when
// full, {-1, 0} when the epoch is not ours.
const daySrc = `
if redis.call('GET', KEYS[2]) ~= ARGV[4] then return {-1, 0} end
local t = redis.call('TIME')
local nowms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local B = tonumber(ARGV[1])
local nb = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local cur = math.floor(tonumber(t[1]) / B)
local h = redis.call('HGETALL', KEYS[1])
local sum = 0
local kept = {}
for i = 1, #h, 2 do
  local b = tonumber(h[i])
  local c = tonumber(h[i + 1])
  if b < cur - nb then
    redis.call('HDEL', KEYS[1], h[i])
  else
    sum = sum + c
    kept[#kept + 1] = {b, c}
  end
end
if sum < limit then
  redis.call('HINCRBY', KEYS[1], string.format('%d', cur), 1)
  redis.call('EXPIRE', KEYS[1], (nb + 2) * B)
  return {1, 0}
end
table.sort(kept, function(x, y) return x[1] < y[1] end)
local excess = sum - limit + 1
for _, e in ipairs(kept) do
  excess = excess - e[2]
  if excess <= 0 then return {0, (e[1] + nb + 1) * B * 1000 - nowms} end
end
return {0, (nb + 1) * B * 1000}
`

// shaping is the Redis store's state for connection-open rates and daily
// quotas: the degraded fallback and what Snapshot shows.
type shaping struct {
	day    *redis.Script
	local  *Local           // degraded: this node's share, counted here
	denied map[string]Usage // last refusal per key, for Snapshot
}

// TakeRate implements Store: the GCRA of TakeMessage (same script, one
// token per call, no batching: connection opens are few) on the key's own
// TAT. Degraded, this node takes its share, N ÷ live nodes last seen.
func (r *Redis) TakeRate(ctx context.Context, key string, rt Rate) (bool, time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return false, 0, err
	}
	if rt.IsZero() {
		return true, 0, nil
	}
	t := rateInterval(rt)
	tUS := (int64(t) + 999) / 1000 // round up: never faster
	tau := tUS * int64(RateBurst(rt)-1)
	degraded := func() (bool, time.Duration, error) {
		if !r.contact {
			return false, r.opts.ProbeEvery, nil
		}
		share := rt
		share.N = max(1, rt.N/max(1, len(r.peers)))
		return r.sh.local.TakeRate(ctx, key, share)
	}
	ok, retry, err := r.shaped(ctx, key, KindOpen, degraded, func(ctx context.Context) ([]int64, error) {
		return r.runInts(ctx, r.scripts.gcra, []string{r.k("tat", key), r.members.EpochKey()}, tUS, tau, 1, r.epochNow())
	}, time.Microsecond)
	if !ok && err == nil {
		r.note(Usage{Key: key, Kind: KindOpen, Limit: rt.N, Per: rt.Per, Burst: RateBurst(rt), InUse: RateBurst(rt), NextSlot: time.Now().Add(retry)})
	}
	return ok, retry, err
}

// TakeDaily implements Store with the daily window in one Redis hash.
// Degraded, this node counts its share, perDay ÷ live nodes last seen,
// from the outage on (what the cluster sent before it is not known here:
// an outage may add up to one day's quota over the cluster).
func (r *Redis) TakeDaily(ctx context.Context, key string, perDay int) (bool, time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return false, 0, err
	}
	if perDay <= 0 {
		return true, 0, nil
	}
	degraded := func() (bool, time.Duration, error) {
		if !r.contact {
			return false, r.opts.ProbeEvery, nil
		}
		return r.sh.local.TakeDaily(ctx, key, max(1, perDay/max(1, len(r.peers))))
	}
	ok, retry, err := r.shaped(ctx, key, KindDay, degraded, func(ctx context.Context) ([]int64, error) {
		return r.runInts(ctx, r.sh.day, []string{r.k("day", key), r.members.EpochKey()},
			int64(DayBucket/time.Second), dayBuckets, perDay, r.epochNow())
	}, time.Millisecond)
	if !ok && err == nil {
		r.note(Usage{Key: key, Kind: KindDay, Limit: perDay, InUse: perDay, NextSlot: time.Now().Add(retry)})
	}
	return ok, retry, err
}

// shaped runs a shaping script in shared and rejoining modes and the
// local share when degraded or when Redis fails. The script answers
// {granted, wait in unit}.
func (r *Redis) shaped(ctx context.Context, key string, kind Kind, degraded func() (bool, time.Duration, error),
	run func(context.Context) ([]int64, error), unit time.Duration) (bool, time.Duration, error) {
	r.mu.Lock()
	if r.mode == modeDegraded {
		defer r.mu.Unlock()
		return degraded()
	}
	r.mu.Unlock()
	res, err := run(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err != nil:
		if ctx.Err() != nil {
			return false, 0, ctx.Err()
		}
		r.failLocked(err)
		return degraded()
	case res[0] == -1:
		r.epochLostLocked()
		return degraded()
	case res[0] == 0:
		return false, max(time.Duration(res[1])*unit, time.Millisecond), nil
	}
	delete(r.sh.denied, key)
	return true, 0, nil
}

func (r *Redis) note(u Usage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sh.denied) < 10000 {
		r.sh.denied[u.Key] = u
	}
}

// shapedSnapshotLocked adds the open-rate and daily keys refused lately.
func (r *Redis) shapedSnapshotLocked(out []Usage) []Usage {
	now := time.Now()
	for k, u := range r.sh.denied {
		if now.After(u.NextSlot) {
			delete(r.sh.denied, k)
			continue
		}
		out = append(out, u)
	}
	return out
}
