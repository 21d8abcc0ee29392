package queue

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/penstock-mta/penstock/flow"
)

// Flow is dynamic flow control as the dispatcher sees it: it reports every
// attempt and asks before opening a connection. Package flow implements it
// in-process; the cluster mode shares it through Redis.
type Flow interface {
	// Check says how a site may be used now; a Decision with Probe set
	// has given this caller the probe slot.
	Check(site string, now time.Time) flow.Decision
	// Peek is Check without side effects.
	Peek(site string, now time.Time) flow.Decision
	// Holds is Peek(site, now).Hold, without building the rest.
	Holds(site string, now time.Time) bool
	// Record reports the outcome of one attempt (a connection or a
	// message). Recipient-level rejections (user unknown) are reported as
	// successes of the site: they are the recipient's problem.
	Record(ev flow.Event)
	// Reset ends a backoff or suspension at once (operator resume).
	Reset(site string)
	// Local reports whether errors across many sites point at our side.
	Local() (bool, flow.LocalProblem)
	// Sources lists the site's sources that flow control holds or cuts
	// (by source IP, sorted); nil when every source is normal.
	Sources(site string, now time.Time) []flow.SourceDecision
	// SourcesAll is Sources with the healthy sources too (explain).
	SourcesAll(site string, now time.Time) []flow.SourceDecision
	// TakeProbe takes a suspended source's probe slot, if one is due.
	TakeProbe(site, source string, now time.Time) bool
}

func (q *Queue) flowSources(site string, now time.Time) []flow.SourceDecision {
	if q.deps.Flow == nil {
		return nil
	}
	return q.deps.Flow.Sources(site, now)
}

// sourceHeld reports whether flow control holds a source at a site now
// (a session from it stops after the message on the wire).
func (q *Queue) sourceHeld(site string, src Source, now time.Time) bool {
	for _, d := range q.flowSources(site, now) {
		if d.Source == sourceIP(src) {
			return d.Hold
		}
	}
	return false
}

// poolPlan is a pool as flow control lets it be used now: the sources
// that may send (normal ones and those in backoff, with their cut
// limits), then those whose probe is due.
type poolPlan struct {
	usable []Source
	probes []Source
	per    map[netip.Addr]limits // limits of the troubled sources

	held []flow.SourceDecision
}

// planPool applies the sources' flow states to a pool. With every source
// normal (decs nil) it is the pool itself and costs nothing. Caller holds
// s.mu.
func (s *site) planPool(lim limits, pool []Source, decs []flow.SourceDecision) poolPlan {
	if len(decs) == 0 {
		return poolPlan{usable: pool}
	}
	plan := poolPlan{per: make(map[netip.Addr]limits, len(decs)), usable: make([]Source, 0, len(pool))}
	addrs := make([]netip.Addr, len(decs))
	for i, d := range decs {
		addrs[i], _ = netip.ParseAddr(d.Source)
	}
	for _, src := range pool {
		var dec *flow.SourceDecision
		for i := range decs {
			if src.IP.IsValid() && addrs[i] == src.IP {
				dec = &decs[i]
				break
			}
		}
		if dec == nil {
			plan.usable = append(plan.usable, src)
			continue
		}
		ip := dec.Source
		switch {
		case dec.Probe:
			if s.probingSrc[ip] {
				plan.held = append(plan.held, *dec)
				continue
			}
			l := lim
			l.maxConns, l.maxMsgs, l.srcProbe = 1, 1, true
			l.flowState, l.flowDetail = dec.State, "probe of source "+ip+" ("+dec.State+")"
			plan.per[src.IP] = l
			plan.probes = append(plan.probes, src)
		case dec.Hold:
			plan.held = append(plan.held, *dec)
		default:
			l := lim
			applyLimit(&l, dec.Decision)
			applyCuts(&l, dec.Decision)
			if dec.State != flow.Normal || dec.Limit != nil {
				// The full text is explain's (SourcesAll); the scheduler's
				// path keeps to the state.
				l.flowState, l.flowDetail = dec.State, "source "+ip+" in flow state "+dec.State
				if dec.State == flow.Normal {
					l.flowState = flow.Limited
				}
			}
			plan.per[src.IP] = l
			plan.usable = append(plan.usable, src)
		}
	}
	return plan
}

// heldDetail says why no source of the pool may send: each held source's
// diagnosis (which names it) and state, from the full decisions.
func heldDetail(all, held []flow.SourceDecision) string {
	var b strings.Builder
	b.WriteString("flow control holds every source of the pool")
	i := 0
	for _, d := range all {
		if !slices.ContainsFunc(held, func(h flow.SourceDecision) bool { return h.Source == d.Source }) {
			continue
		}
		i++
		if i == 1 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		if d.Diagnosis != "" {
			b.WriteString(d.Diagnosis)
			b.WriteString(" (")
			b.WriteString(d.Detail)
			b.WriteString(")")
		} else {
			b.WriteString(d.Detail)
		}
	}
	return b.String()
}
