package flow

import (
	"time"
)

const buckets = 30

// window counts attempts and errors in fixed time buckets.
type window struct {
	span     time.Duration // per bucket
	stamp    [buckets]int64
	attempts [buckets]int32
	errors   [buckets]int32
	oks      [buckets]int32
}

func (w *window) add(t time.Time, ok, isErr bool) {
	slot := t.UnixNano() / int64(w.span)
	i := slot % buckets
	if w.stamp[i] != slot {
		w.stamp[i] = slot
		w.attempts[i], w.errors[i], w.oks[i] = 0, 0, 0
	}
	w.attempts[i]++
	if isErr {
		w.errors[i]++
	}
	if ok {
		w.oks[i]++
	}
}

// last is the start of the newest bucket that counted something.
func (w *window) last() time.Time {
	var slot int64
	for i := range w.stamp {
		if w.attempts[i] > 0 && w.stamp[i] > slot {
			slot = w.stamp[i]
		}
	}
	return time.Unix(0, slot*int64(w.span))
}

func (w *window) sums(now time.Time) (attempts, errs, oks int) {
	slot := now.UnixNano() / int64(w.span)
	for i := range w.stamp {
		if slot-w.stamp[i] < buckets {
			attempts += int(w.attempts[i])
			errs += int(w.errors[i])
			oks += int(w.oks[i])
		}
	}
	return
}

type hits struct{ times []time.Time }
