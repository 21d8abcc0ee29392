package warmup

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Shared is where a cluster's nodes count a pair's day together.
type Shared interface {
	// Incr adds n to field of the pair's day and returns the new value;
	// the day's counts expire after ttl.
	Incr(ctx context.Context, key string, day int64, field string, n int64, ttl time.Duration) (int64, error)
	// Take adds one to the pair's day's sent count unless it has reached
	// limit, in one step: a count read meanwhile never exceeds the limit.
	// It returns the count after and whether the one was taken.
	Take(ctx context.Context, key string, day, limit int64, ttl time.Duration) (int64, bool, error)
	// Get reads the pair's day.
	Get(ctx context.Context, key string, day int64) (Health, error)
	// Decide records step as the pair's step from day on, unless a node
	// already decided that day; it returns the step in force.
	Decide(ctx context.Context, key string, day int64, step int) (int, error)
}

// Redis is Shared in Redis: a hash per pair and day for the counts
// (HINCRBY), a hash per pair for the step and the day it holds from.
type Redis struct {
	c      *redis.Client
	prefix string
}

// NewRedis uses c with keys under prefix (e.g. "penstock:").
func NewRedis(c *redis.Client, prefix string) *Redis { return &Redis{c: c, prefix: prefix + "warmup:"} }

func (r *Redis) dayKey(key string, day int64) string {
	return r.prefix + "day:" + key + ":" + strconv.FormatInt(day, 10)
}

// Incr implements Shared.
func (r *Redis) Incr(ctx context.Context, key string, day int64, field string, n int64, ttl time.Duration) (int64, error) {
	k := r.dayKey(key, day)
	p := r.c.TxPipeline()
	v := p.HIncrBy(ctx, k, field, n)
	p.Expire(ctx, k, ttl)
	if _, err := p.Exec(ctx); err != nil {
		return 0, err
	}
	return v.Val(), nil
}

// takeScript: HINCRBY sent by one unless it has reached ARGV[1]; the
// day's hash expires after ARGV[2] ms. Returns {count, taken}.
var takeScript = redis.NewScript(`
local n = tonumber(redis.call('HGET', KEYS[1], 'sent') or '0')
if n >= tonumber(ARGV[1]) then
  return {n, 0}
end
n = redis.call('HINCRBY', KEYS[1], 'sent', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {n, 1}
`)

// Take implements Shared.
func (r *Redis) Take(ctx context.Context, key string, day, limit int64, ttl time.Duration) (int64, bool, error) {
	v, err := takeScript.Run(ctx, r.c, []string{r.dayKey(key, day)}, limit, ttl.Milliseconds()).Int64Slice()
	if err != nil {
		return 0, false, err
	}
	if len(v) != 2 {
		return 0, false, fmt.Errorf("warmup: take script returned %d values", len(v))
	}
	return v[0], v[1] == 1, nil
}

// Get implements Shared.
func (r *Redis) Get(ctx context.Context, key string, day int64) (Health, error) {
	m, err := r.c.HGetAll(ctx, r.dayKey(key, day)).Result()
	if err != nil {
		return Health{}, err
	}
	n := func(f string) int64 { v, _ := strconv.ParseInt(m[f], 10, 64); return v }
	return Health{Sent: n("sent"), Delivered: n(Delivered), Deferred: n(Deferred), Bounced: n(Bounced),
		Throttles: n("throttles"), Complaints: n(Complaint)}, nil
}

// decideScript: set the step for day unless the stored day is that day or
// later; return the step in force.
var decideScript = redis.NewScript(`
local d = tonumber(redis.call('HGET', KEYS[1], 'day') or '-1')
if d < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'day', ARGV[1], 'step', ARGV[2])
  return tonumber(ARGV[2])
end
return tonumber(redis.call('HGET', KEYS[1], 'step'))
`)

// Decide implements Shared.
func (r *Redis) Decide(ctx context.Context, key string, day int64, step int) (int, error) {
	v, err := decideScript.Run(ctx, r.c, []string{r.prefix + "state:" + key}, day, step).Int()
	return v, err
}
