package queue

import (
	"maps"
	"sync"
)

// Gauges are the queue's metrics: recipients by status text (every status
// present, at 0 when nothing waits so, so that each is a series) and open
// connections by rule name. One walk of the site views serves both.
func (q *Queue) Gauges() (byStatus, connsByRule map[string]int) {
	byStatus, connsByRule = map[string]int{}, map[string]int{}
	for _, st := range Statuses() {
		byStatus[st] = 0
	}
	for _, v := range q.Sites() {
		for st, n := range v.ByStatus {
			byStatus[st] += n
		}
		if v.Connections > 0 {
			connsByRule[v.Rule.Name] += v.Connections
		}
	}
	return byStatus, connsByRule
}

// opened counts the delivery connections opened (dialled, greeted, EHLO
// answered), by rule name. Against a receiver that serves many domains
// at few addresses it is the figure to watch: a connection is what such a
// receiver counts and limits, and each costs a TCP and SMTP handshake.
type opened struct {
	mu     sync.Mutex
	byRule map[string]uint64
}

func (o *opened) add(rule string) {
	o.mu.Lock()
	if o.byRule == nil {
		o.byRule = map[string]uint64{}
	}
	o.byRule[rule]++
	o.mu.Unlock()
}

// ConnectionsOpened returns how many delivery connections each rule has
// opened since the queue started.
func (q *Queue) ConnectionsOpened() map[string]uint64 {
	q.opened.mu.Lock()
	defer q.opened.mu.Unlock()
	return maps.Clone(q.opened.byRule)
}

// SessionsShared returns how many times an idle connection of one site
// took a job of another site at the same address instead of that site
// dialling (share.go).
func (q *Queue) SessionsShared() uint64 { return q.shared.Load() }
