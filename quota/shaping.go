package quota

import (
	"context"
	"fmt"
	"time"
)

// Rate is a limit of N events per period Per, such as a rule's
// max_connection_rate "30/1m". The zero Rate is no limit.
type Rate struct {
	N   int
	Per time.Duration
}

// IsZero reports whether r sets no limit.
func (r Rate) IsZero() bool { return r.N <= 0 || r.Per <= 0 }

// String is the config form, "30/1m0s".
func (r Rate) String() string {
	if r.IsZero() {
		return "unlimited"
	}
	return fmt.Sprintf("%d/%s", r.N, r.Per)
}

// RateBurst is the GCRA burst of a generic rate: 30 seconds' worth of it,
// at least 1 and at most 10 (as Burst for messages per hour), and also at
// most a quarter of N, so that a receiver counting over the rate's own
// period sees at most 1.25 × N. For an hourly rate it equals Burst(N).
func RateBurst(r Rate) int {
	if r.IsZero() {
		return 0
	}
	worth := int(int64(r.N) * int64(30*time.Second) / int64(r.Per))
	return max(1, min(worth, 10, r.N/4))
}

// rateInterval is the GCRA emission interval of r, rounded up so that
// the rate is never exceeded.
func rateInterval(r Rate) time.Duration {
	return time.Duration((int64(r.Per) + int64(r.N) - 1) / int64(r.N))
}

// The daily quota is a sliding window of buckets: see the package comment.
const (
	// DayBucket is the width of one bucket of the daily window.
	DayBucket = 15 * time.Minute
	// dayBuckets buckets before the current one are counted: together they
	// cover the last 24 h and up to one bucket more, never less.
	dayBuckets = int64(24 * time.Hour / DayBucket)
	daySlots   = dayBuckets + 1
)

type dayState struct {
	perDay int
	idx    [daySlots]int64 // bucket number held by each slot
	n      [daySlots]int32
}

func bucketOf(t time.Time) int64 { return t.UnixNano() / int64(DayBucket) }

// count returns the messages in the window ending in bucket cur, and
// when the count drops below limit (zero if it is below already).
func (d *dayState) count(cur int64, limit int, now time.Time) (int, time.Time) {
	sum := 0
	for i := range d.n {
		if d.idx[i] >= cur-dayBuckets && d.n[i] > 0 {
			sum += int(d.n[i])
		}
	}
	if sum < limit {
		return sum, time.Time{}
	}
	// Buckets leave the window oldest first: find the one whose exit
	// brings the count under the limit.
	excess := sum - limit + 1
	for b := cur - dayBuckets; b <= cur; b++ {
		s := b % daySlots
		if d.idx[s] != b {
			continue
		}
		excess -= int(d.n[s])
		if excess <= 0 {
			return sum, time.Unix(0, (b+daySlots)*int64(DayBucket))
		}
	}
	return sum, now.Add(24 * time.Hour) // unreachable while limit >= 1
}

func (d *dayState) add(cur int64) {
	s := cur % daySlots
	if d.idx[s] != cur {
		d.idx[s], d.n[s] = cur, 0
	}
	d.n[s]++
}

// idle reports whether no counted message remains at bucket cur.
func (d *dayState) idle(cur int64) bool {
	for i := range d.n {
		if d.idx[i] >= cur-dayBuckets && d.n[i] > 0 {
			return false
		}
	}
	return true
}

// TakeRate implements Store.
func (l *Local) TakeRate(ctx context.Context, key string, r Rate) (bool, time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return false, 0, err
	}
	if r.IsZero() {
		return true, 0, nil
	}
	now := l.clock.Now()
	l.maybeSweep(now)
	return l.takeGCRA(key, KindOpen, r, now)
}

// takeGCRA is the GCRA of the package comment for any rate.
func (l *Local) takeGCRA(key string, kind Kind, r Rate, now time.Time) (bool, time.Duration, error) {
	t := rateInterval(r)
	tau := t * time.Duration(RateBurst(r)-1)
	sh := l.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	st := sh.rates[key]
	if st == nil {
		st = &rateState{tat: now}
		sh.rates[key] = st
	}
	st.rate, st.kind = r, kind
	tat := st.tat
	if tat.Before(now) {
		tat = now
	}
	if wait := tat.Sub(now) - tau; wait > 0 {
		return false, wait, nil
	}
	st.tat = tat.Add(t)
	return true, 0, nil
}

// TakeDaily implements Store.
func (l *Local) TakeDaily(ctx context.Context, key string, perDay int) (bool, time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return false, 0, err
	}
	if perDay <= 0 {
		return true, 0, nil
	}
	now := l.clock.Now()
	l.maybeSweep(now)
	cur := bucketOf(now)
	sh := l.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	d := sh.days[key]
	if d == nil {
		d = &dayState{}
		for i := range d.idx {
			d.idx[i] = -1
		}
		sh.days[key] = d
	}
	d.perDay = perDay
	if _, free := d.count(cur, perDay, now); !free.IsZero() {
		return false, max(free.Sub(now), time.Millisecond), nil
	}
	d.add(cur)
	return true, 0, nil
}
