package queue

import (
	"context"
	"crypto/x509"
	"net/netip"
	"time"

	"github.com/penstock-mta/penstock/dns"
	"github.com/penstock-mta/penstock/mxrule"
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
// timeouts and TLS settings are the ones the other site would have used);
// under tls "verify", the certificate verified must name the other site's
// MX host too (vouches).
// A site whose domains have an MTA-STS or DANE policy never borrows: its
// check is of its own MX host name on the connection it makes.
//
// A runner refused a connection under a key an idle connection of another
// site holds a lease under (a rule or path scope met) gives that
// connection the job without a lease (lendHeld): it keeps its own, which
// counts for both.

// shareKey is what a job of another site must match to ride a connection.
type shareKey struct {
	ip   netip.Addr // the MX address connected to
	src  netip.Addr // the source address (invalid: the kernel's choice)
	ehlo string
	rule string
	tls  smtpclient.TLSMode // the rule's effective TLS mode
}

func shareKeyOf(t target, p path, lim limits) shareKey {
	k := shareKey{ip: t.ip, src: p.src.IP, ehlo: p.src.EHLO, tls: lim.tls()}
	if r := lim.match.Rule; r != nil {
		k.rule = r.Name
	}
	return k
}

// handover is a claimed job with its connection lease, given to an idle
// session of another site.
type handover struct {
	s     *site
	lease quota.Lease // nil with keep
	keep  bool        // the connection keeps its own lease (lendHeld)
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

// borrowTarget is where a job of this site would ride another site's
// connection: fixed (a path-scoped lease covers that address only) or the
// first address of its first MX host, as dial would try them. false when
// the site may not borrow: a probe (it tests the site on a connection of
// its own), a site with a TLS policy (sharable), or no idle connection to
// borrow (anyIdle: then nothing is looked up).
func (s *site) borrowTarget(cfg *Config, hosts []dns.MX, lim limits, fixed *target) (target, bool) {
	q := s.q
	if lim.probe || lim.srcProbe || !q.yields.anyIdle() || !sharable(s.policyOf()) {
		return target{}, false
	}
	if fixed != nil {
		return *fixed, true
	}
	ctx, cancel := context.WithTimeout(q.ctx, 5*time.Second)
	targets, _ := s.lookupTargets(ctx, cfg, hosts[:min(len(hosts), 1)])
	cancel()
	if len(targets) == 0 {
		return target{}, false
	}
	return targets[0], true
}

// handOver gives a job the runner just claimed, with its lease, to an idle
// session of another site connected to the address this site would dial
// first. It reports whether one took it; the caller then owns nothing.
// The runner asks it before it starts a session, so a job handed over
// costs no goroutine.
func (s *site) handOver(cfg *Config, hosts []dns.MX, lease quota.Lease, p path, j *job, lim limits) bool {
	t, ok := s.borrowTarget(cfg, hosts, lim, p.fixed)
	if !ok {
		return false
	}
	return s.q.yields.lend(s, shareKeyOf(t, p, lim), handover{s: s, lease: lease, p: p, j: j, lim: lim, t: t})
}

// adopt makes a session of another site the session of h's site, holding
// lease: the connection's TLS outcome is reported for h's domain as its
// own dial would have, and the connection's new yield registration is
// returned.
func (h handover) adopt(c *smtpclient.Client, lease quota.Lease) *yieldWatch {
	s, q := h.s, h.s.q
	pol := s.policyOf()
	domain := h.j.domain.Value()
	_ = s.policyDial(pol, domain, h.t, c, nil, false)
	s.recordTLS(pol, domain, h.lim.tls(), h.t, c, nil)
	q.shared.Add(1)
	return q.yields.watchShared(s, lingerKeys(lease.Key(), h.lim.caps, h.t.ip), shareKeyOf(h.t, h.p, h.lim), len(h.lim.caps) > 0, leafOf(c))
}

// leafOf is the server's certificate of a connection whose TLS verified
// it; nil otherwise.
func leafOf(c *smtpclient.Client) *x509.Certificate {
	if !c.Verified() {
		return nil
	}
	if cs := c.TLSConnectionState(); cs != nil && len(cs.PeerCertificates) > 0 {
		return cs.PeerCertificates[0]
	}
	return nil
}

// vouches reports whether connection w may carry mail for MX host name
// host: under a rule whose tls is "verify" only when the certificate it
// verified is valid for that name too (a certificate for one hosted
// domain's MX name says nothing of another's, unless it names it).
func (w *yieldWatch) vouches(host string) bool {
	if w.share.tls != smtpclient.TLSVerify {
		return true
	}
	return w.leaf != nil && w.leaf.VerifyHostname(host) == nil
}

// lend gives h to one idle connection at k's address, of a site other
// than from, whose shareKey is k. The connection stops counting as idle at
// once, so nothing else (contend, another lend) picks it too; it finds the
// job when it next looks (leave), whatever ends its linger.
func (y *yields) lend(from *site, k shareKey, h handover) bool {
	y.mu.Lock()
	defer y.mu.Unlock()
	for w := range y.byKey[addrKey(k.ip)] {
		if w.lendable(from, h.t.host) && w.share == k {
			y.setIdleLocked(w, false)
			w.offerLocked(h)
			return true
		}
	}
	return false
}

// lendable reports whether w lingers, may take a job of site from for MX
// host name host, and has none yet. Caller holds y.mu.
func (w *yieldWatch) lendable(from *site, host string) bool {
	return w.idle && !w.closed && w.site != from && w.offers != nil && w.pending == nil && w.vouches(host)
}

// offerLocked gives w the job and wakes its linger. Caller holds y.mu.
func (w *yieldWatch) offerLocked(h handover) {
	w.pending = &h
	select {
	case w.offers <- struct{}{}:
	default:
	}
}

// anyIdle reports whether any connection that could take another site's
// job lingers now: without one, a site about to dial skips the lookup of
// its address.
func (y *yields) anyIdle() bool {
	y.mu.Lock()
	defer y.mu.Unlock()
	return y.idleShared > 0
}

// lendHeld is for a runner refused a connection under key (a rule's or a
// path's quota met, not a cap's): when an idle connection of another site
// holds a lease under that key, is open to the address this site would
// dial first, and matches what this site's session would be (source of
// its pool, EHLO, rule, TLS mode), the job rides that connection under
// the lease it already holds: both sites count under the key, so the
// count stays right and no connection closes for another to open. A
// connection whose lease holds caps, or a site with caps of its own at
// that source, is left to the yield path (contend). It reports whether a
// job was handed over.
func (s *site) lendHeld(cfg *Config, lim limits, hosts []dns.MX, plan poolPlan, key string) bool {
	q := s.q
	if len(plan.probes) > 0 {
		return false // a due probe takes the next connection
	}
	t, ok := s.borrowTarget(cfg, hosts, lim, nil)
	if !ok {
		return false
	}
	siteCaps := cfg.Caps.ForSite(lim.match.Rule.Name, mxNames(hosts))
	fits := func(k shareKey) (Source, bool) {
		if k.ip != t.ip || k.tls != lim.tls() || k.rule != lim.match.Rule.Name {
			return Source{}, false
		}
		for _, src := range plan.usable {
			if src.IP == k.src && src.EHLO == k.ehlo && len(siteCaps.ForSource(src.Name)) == 0 {
				return src, true
			}
		}
		if len(plan.usable) == 0 && !k.src.IsValid() && k.ehlo == "" && len(siteCaps.ForSource("")) == 0 {
			return Source{}, true // an empty pool: the kernel's source, as acquire takes it
		}
		return Source{}, false
	}
	w, src := q.yields.reserve(key, t.host, s, fits)
	if w == nil {
		return false
	}
	sl := lim
	if l, ok := plan.per[src.IP]; ok {
		sl = l
	}
	sl.source, sl.caps = src.Name, nil
	j, _ := s.claim(sl, key)
	if j == nil {
		q.yields.unreserve(w)
		return false
	}
	p := path{src: src}
	if lim.match.Rule.Scope == mxrule.ScopePath {
		p.fixed = &t
	}
	s.mu.Lock()
	s.active++
	s.mu.Unlock()
	if q.yields.complete(w, handover{s: s, keep: true, p: p, j: j, lim: sl, t: t}) {
		return true
	}
	// The connection stopped lingering meanwhile: the job goes back.
	s.mu.Lock()
	s.active--
	s.mu.Unlock()
	s.release(j, true)
	return false
}

// reserve picks an idle connection of a site other than from holding a
// lease under key, with no caps, whose shareKey fits; it counts as busy
// until complete or unreserve. fits also names the source to send as.
func (y *yields) reserve(key, host string, from *site, fits func(shareKey) (Source, bool)) (*yieldWatch, Source) {
	y.mu.Lock()
	defer y.mu.Unlock()
	for w := range y.byKey[key] {
		if !w.lendable(from, host) || w.capped || w.keys[0] != key {
			continue
		}
		if src, ok := fits(w.share); ok {
			y.setIdleLocked(w, false)
			w.reserved = true
			return w, src
		}
	}
	return nil, Source{}
}

// unreserve gives a reserved connection back to its linger.
func (y *yields) unreserve(w *yieldWatch) {
	y.mu.Lock()
	defer y.mu.Unlock()
	if w.reserved {
		w.reserved = false
		y.setIdleLocked(w, true)
	}
}

// complete hands h to a reserved connection; false when it stopped
// lingering meanwhile (leave cleared the reservation).
func (y *yields) complete(w *yieldWatch, h handover) bool {
	y.mu.Lock()
	defer y.mu.Unlock()
	if !w.reserved {
		return false
	}
	w.reserved = false
	w.offerLocked(h)
	return true
}
