package queue

import (
	"crypto/x509"
	"sync"
	"time"
)

// yields lets an idle connection give its quota up to a site that needs
// it. A lingering session holds its connection lease (and its caps'); with
// a quota shared by several sites (a rule or cap scope, or one MX host set
// in several pools) a runner refused a connection would otherwise wait for
// an idle connection's linger to run out. Each connection registers its
// quota keys once (watch) and marks itself idle while it lingers; a runner
// refused under a key calls contend, which tells one idle connection of
// another site holding that key to close. Its lease's release wakes the
// runner (Quotas.Wait); a runner still refused asks again, one connection
// at a time, so no more close than are needed. Only this node's sessions
// hear it: in a cluster an idle connection on another node closes at its
// linger's end.
type yields struct {
	mu    sync.Mutex
	byKey map[string]map[*yieldWatch]struct{}
	// full: until when a key's receiver counts as full (nudge).
	full map[string]time.Time
	// idleShared counts the idle connections that take other sites'
	// jobs (share.go).
	idleShared int
}

// fullFor is how long a receiver that kept a new connection waiting for
// its greeting counts as full: meanwhile each new connection to it asks an
// idle one to close at once rather than after greetPatience. A stall seen
// again renews it; once it lapses, idle connections linger as usual.
const fullFor = 10 * time.Second

// maxFull bounds the full map: past it, lapsed entries are swept.
const maxFull = 1024

// yieldWatch is one connection's registration: ch is closed when it is to
// close at its next idle moment.
type yieldWatch struct {
	site   *site
	keys   []string
	ch     chan struct{}
	idle   bool // lingering now
	closed bool // ch is closed
	// share, offers and pending: a connection that takes another site's
	// job (share.go) matching share; lend sets pending and signals offers
	// while it lingers. offers is nil for one that takes none.
	share   shareKey
	offers  chan struct{}
	pending *handover
	// capped: the connection's lease holds [[cap]] leases too, so it
	// keeps no job of another site under its own lease (lendHeld).
	capped bool
	// reserved: lendHeld chose it and is claiming a job for it; it
	// counts as busy meanwhile. leave clears it.
	reserved bool
	// leaf: the server's certificate when the connection's TLS verified
	// it (vouches).
	leaf *x509.Certificate
}

// watch registers a connection of site s holding keys.
func (y *yields) watch(s *site, keys []string) *yieldWatch {
	return y.register(&yieldWatch{site: s, keys: keys, ch: make(chan struct{})})
}

// register files w under each of its keys.
func (y *yields) register(w *yieldWatch) *yieldWatch {
	y.mu.Lock()
	if y.byKey == nil {
		y.byKey = make(map[string]map[*yieldWatch]struct{})
	}
	for _, k := range w.keys {
		set := y.byKey[k]
		if set == nil {
			set = make(map[*yieldWatch]struct{}, 1)
			y.byKey[k] = set
		}
		set[w] = struct{}{}
	}
	y.mu.Unlock()
	return w
}

// watchShared registers a connection that also takes jobs of other sites
// matching k while it lingers (share.go).
func (y *yields) watchShared(s *site, keys []string, k shareKey, capped bool, leaf *x509.Certificate) *yieldWatch {
	return y.register(&yieldWatch{site: s, keys: keys, ch: make(chan struct{}),
		share: k, offers: make(chan struct{}, 1), capped: capped, leaf: leaf})
}

// unwatch removes a registration; keys nobody holds leave the map.
func (y *yields) unwatch(w *yieldWatch) {
	y.mu.Lock()
	y.setIdleLocked(w, false)
	for _, k := range w.keys {
		if set := y.byKey[k]; set != nil {
			delete(set, w)
			if len(set) == 0 {
				delete(y.byKey, k)
			}
		}
	}
	y.mu.Unlock()
}

// setIdle marks a connection lingering (or not).
func (y *yields) setIdle(w *yieldWatch, idle bool) {
	y.mu.Lock()
	y.setIdleLocked(w, idle)
	y.mu.Unlock()
}

// setIdleLocked is setIdle with y.mu held; it keeps idleShared.
func (y *yields) setIdleLocked(w *yieldWatch, idle bool) {
	if w.offers != nil && w.idle != idle {
		if idle {
			y.idleShared++
		} else {
			y.idleShared--
		}
	}
	w.idle = idle
}

// leave marks a connection no longer lingering and returns the job of
// another site lent to it meanwhile, if any: once lent, the job is its to
// deliver, whatever ended its linger.
func (y *yields) leave(w *yieldWatch) *handover {
	y.mu.Lock()
	defer y.mu.Unlock()
	y.setIdleLocked(w, false)
	w.reserved = false
	h := w.pending
	w.pending = nil
	return h
}

// contend tells one idle connection holding key, of a site other than
// from, to close. It reports whether there was one. The refusing site's
// own idle connections are left alone: its runner leaves due jobs to them
// (step), so they are busy, not in its way.
func (y *yields) contend(key string, from *site) bool {
	if key == "" {
		return false
	}
	y.mu.Lock()
	defer y.mu.Unlock()
	return y.contendLocked(key, from)
}

func (y *yields) contendLocked(key string, from *site) bool {
	for w := range y.byKey[key] {
		if w.idle && !w.closed && w.site != from {
			w.closed = true
			close(w.ch)
			return true
		}
	}
	return false
}

// nudge is for a connection about to wait for its greeting: every
// interval until stop is called, it marks key's receiver full and asks
// one idle connection holding key to close (overfull), so that, when our
// own idle connections fill the receiver's slots, they free them one at a
// time. While the receiver counts as full it asks once at the start too.
func (y *yields) nudge(key string, from *site, every time.Duration) (stop func()) {
	if y.isFull(key, time.Now()) {
		y.contend(key, from)
	}
	var mu sync.Mutex
	stopped := false
	var t *time.Timer
	mu.Lock()
	t = time.AfterFunc(every, func() {
		y.overfull(key, from, time.Now())
		mu.Lock()
		if !stopped {
			t.Reset(every)
		}
		mu.Unlock()
	})
	mu.Unlock()
	return func() {
		mu.Lock()
		stopped = true
		t.Stop()
		mu.Unlock()
	}
}

func (y *yields) isFull(key string, now time.Time) bool {
	y.mu.Lock()
	defer y.mu.Unlock()
	until, ok := y.full[key]
	return ok && now.Before(until)
}

// overfull is for a receiver that kept a connection of ours waiting for
// its greeting or refused it there: it counts as full from now, and one
// idle connection of ours to it (of a site other than from) is told to
// close. It reports whether there was one.
func (y *yields) overfull(key string, from *site, now time.Time) bool {
	y.mu.Lock()
	defer y.mu.Unlock()
	y.markFullLocked(key, now)
	return y.contendLocked(key, from)
}

func (y *yields) markFullLocked(key string, now time.Time) {
	if y.full == nil {
		y.full = make(map[string]time.Time)
	}
	if len(y.full) >= maxFull {
		for k, until := range y.full {
			if !now.Before(until) {
				delete(y.full, k)
			}
		}
	}
	if len(y.full) < maxFull {
		y.full[key] = now.Add(fullFor)
	}
}
