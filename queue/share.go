package queue

import (
	"context"
	"net/netip"
	"time"

	"github.com/penstock-mta/penstock/quota"
	"github.com/penstock-mta/penstock/smtpclient"
	"github.com/penstock-mta/penstock/tlspolicy"
)

// Sessions shared across sites (docs/session-sharing.md). Many receivers
// give each hosted domain an MX name of its own over one pool of
// addresses, so each such domain is a site of its own; without sharing,
// each opens its own connections to the same few addresses, and where the
// receiver serves a bounded number of sessions the idle ones of one site
// are closed for the next (yield.go): a connection per message or two.
// As Postfix's connection cache is searched by server address, a session
// lingering at an address here takes a job of another site headed for the
// same address, instead of that site dialling.
//
// The handover happens when the other site's runner has claimed the job
// and taken its connection lease, so every gate a new connection passes
// (suspension, flow control, the rule's and caps' quotas, the rate
// tokens) has passed for it. The idle session then releases its own
// site's lease and carries the other site's from then on: it belongs to
// that site, delivers, lingers and is counted there, as if it had dialled.
// Only what the connection already is must match (shareKey): the address,
// the source address and EHLO name, and the MX rule and its TLS mode (so
// timeouts and TLS settings are the ones the other site would have used).
// A site whose domains have an MTA-STS or DANE policy never borrows: its
// check is of its own MX host name on the connection it makes.

// shareKey is what a job of another site must match to ride a connection.
type shareKey struct {
	ip   netip.Addr // the MX address connected to
	src  netip.Addr // the source address (invalid: the kernel's choice)
	ehlo string
	rule string
	tls  string // the rule's effective TLS mode
}

func shareKeyOf(t target, p path, lim limits) shareKey {
	k := shareKey{ip: t.ip, src: p.src.IP, ehlo: p.src.EHLO, tls: lim.tlsMode}
	if r := lim.match.Rule; r != nil {
		k.rule = r.Name
	}
	return k
}

// handover is a claimed job with its connection lease, given to an idle
// session of another site.
type handover struct {
	s     *site
	lease quota.Lease
	p     path
	j     *job
	lim   limits
	t     target // the site's own MX host name at the shared address
}

// sharable reports whether a connection not made for a site may carry its
// mail: only when no MTA-STS or DANE policy asks for a check of its own
// MX host name.
func sharable(pol tlspolicy.Policy) bool {
	switch pol.Source {
	case tlspolicy.SourceDANE:
		return false
	case tlspolicy.SourceSTS:
		return pol.Mode == tlspolicy.ModeNone
	}
	return true
}

// handOver gives a job the runner just claimed, with its lease, to an idle
// session of another site connected to the address this site would dial
// first. It reports whether one took it; the caller then owns nothing.
// The runner asks it before it starts a session, so a job handed over
// costs no goroutine.
func (s *site) handOver(lease quota.Lease, p path, j *job, lim limits) bool {
	q := s.q
	if lim.probe || lim.srcProbe || !q.yields.anyIdle() || !sharable(s.policyOf()) {
		// A probe tests the site on a connection of its own.
		return false
	}
	var t target
	if p.fixed != nil {
		t = *p.fixed
	} else {
		s.mu.Lock()
		hosts := s.hosts
		s.mu.Unlock()
		ctx, cancel := context.WithTimeout(q.ctx, 5*time.Second)
		targets, _ := s.lookupTargets(ctx, q.config(), hosts[:min(len(hosts), 1)])
		cancel()
		if len(targets) == 0 {
			return false
		}
		t = targets[0]
	}
	return q.yields.lend(s, shareKeyOf(t, p, lim), handover{s: s, lease: lease, p: p, j: j, lim: lim, t: t})
}

// adopt makes a session of another site the session of h's site: the
// connection's TLS outcome is reported for h's domain as its own dial
// would have, and the connection's new yield registration is returned.
func (h handover) adopt(c *smtpclient.Client) *yieldWatch {
	s, q := h.s, h.s.q
	pol := s.policyOf()
	domain := h.j.domain.Value()
	mode, err := smtpclient.ParseTLSMode(h.lim.tlsMode)
	if err != nil {
		mode = smtpclient.TLSOpportunistic
	}
	_ = s.policyDial(pol, domain, h.t, c, nil, false)
	s.recordTLS(pol, domain, mode, h.t, c, nil)
	q.shared.Add(1)
	return q.yields.watchShared(s, lingerKeys(h.lease.Key(), h.lim.caps, h.t.ip), shareKeyOf(h.t, h.p, h.lim))
}

// lend gives h to one idle connection at k's address, of a site other
// than from, whose shareKey is k. The connection stops counting as idle at
// once, so nothing else (contend, another lend) picks it too; it finds the
// job when it next looks (leave), whatever ends its linger.
func (y *yields) lend(from *site, k shareKey, h handover) bool {
	y.mu.Lock()
	defer y.mu.Unlock()
	for w := range y.byKey[addrKey(k.ip)] {
		if !w.idle || w.closed || w.site == from || w.offers == nil || w.pending != nil || w.share != k {
			continue
		}
		w.pending = &h
		w.idle = false
		y.idleShared--
		select {
		case w.offers <- struct{}{}:
		default:
		}
		return true
	}
	return false
}

// anyIdle reports whether any connection that could take another site's
// job lingers now: without one, a site about to dial skips the lookup of
// its address.
func (y *yields) anyIdle() bool {
	y.mu.Lock()
	defer y.mu.Unlock()
	return y.idleShared > 0
}
