package queue

import "sync"

// yields lets an idle connection give its quota up to a site that needs
// it. A lingering session holds its connection lease (and its caps'); with
// a quota shared by several sites (a rule or cap scope, or one MX host set
// in several pools) a runner refused a connection would otherwise wait for
// the idle one's linger to run out. The refused runner calls contend on
// the key it was refused; every session lingering under that key stops
// lingering and closes, and the quota store's release wakes the runner.
// Only this node's sessions hear it: in a cluster an idle connection on
// another node ends at its linger's end, as before.
type yields struct {
	mu    sync.Mutex
	byKey map[string]map[*yieldWatch]struct{}
}

// yieldWatch is one lingering session's registration: ch is closed when a
// runner is refused under one of its keys.
type yieldWatch struct {
	keys   []string
	ch     chan struct{}
	closed bool
}

// watch registers a lingering session under keys.
func (y *yields) watch(keys []string) *yieldWatch {
	w := &yieldWatch{keys: keys, ch: make(chan struct{})}
	y.mu.Lock()
	if y.byKey == nil {
		y.byKey = make(map[string]map[*yieldWatch]struct{})
	}
	for _, k := range keys {
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

// unwatch removes a registration; keys nobody watches leave the map.
func (y *yields) unwatch(w *yieldWatch) {
	y.mu.Lock()
	y.dropLocked(w)
	y.mu.Unlock()
}

func (y *yields) dropLocked(w *yieldWatch) {
	for _, k := range w.keys {
		if set := y.byKey[k]; set != nil {
			delete(set, w)
			if len(set) == 0 {
				delete(y.byKey, k)
			}
		}
	}
}

// contend tells the sessions lingering under key to close. It reports
// whether any was.
func (y *yields) contend(key string) bool {
	if key == "" {
		return false
	}
	y.mu.Lock()
	defer y.mu.Unlock()
	set := y.byKey[key]
	n := len(set)
	for w := range set {
		if !w.closed {
			w.closed = true
			close(w.ch)
		}
		y.dropLocked(w)
	}
	return n > 0
}
