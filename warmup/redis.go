package warmup

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Shared is where a cluster's nodes count a pair's day together.
type Shared interface {
	// Incr adds n to field of the pair's day and returns the new value;
	// the day's counts expire after ttl.
	Incr(ctx context.Context, key string, day int64, field string, n int64, ttl time.Duration) (int64, error)
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
