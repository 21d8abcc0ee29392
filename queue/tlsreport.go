package queue

import (
	"crypto/tls"
	"errors"
	"github.com/penstock-mta/penstock/tlspolicy"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/penstock-mta/penstock/smtpclient"
	"github.com/penstock-mta/penstock/tlsrpt"
)

// reportSkippedTLS reports a session that went in clear text without
// trying STARTTLS because the address's handshake failed recently: for
// TLS reporting it is that failure again.
func (q *Queue) reportSkippedTLS(pol tlspolicy.Policy, domain string, t target) {
	b, _ := q.tlsMem.broken(t.ip, q.now())
	ptype := pol.Source
	if ptype == "" {
		ptype = tlspolicy.SourceNone
	}
	q.reportTLS(tlspolicy.Outcome{Domain: domain, PolicyType: ptype, MXHost: t.host, MXIP: t.ip.String(),
		Result: b.typ, Detail: "STARTTLS skipped, its handshake failed recently: " + b.detail})
}

// tlsDetail is the cause of a TLS failure, without the queue's own
// annotations of the error.
func tlsDetail(err error) string {
	var se *smtpclient.Error
	if errors.As(err, &se) && se.Err != nil {
		return se.Command + ": " + se.Err.Error()
	}
	return err.Error()
}

// maxTLSMemory bounds the MX addresses remembered with a broken TLS.
const maxTLSMemory = 10000

// tlsMemory remembers MX addresses whose STARTTLS handshake failed, so that
// opportunistic mail goes to them in clear text at once for
// Config.TLSFailureMemory instead of failing the handshake and connecting
// again each time (Postfix keeps a similar cache). A rule with tls =
// required or verify never consults it.
type tlsMemory struct {
	mu sync.Mutex
	m  map[netip.Addr]brokenTLS
}

type brokenTLS struct {
	until       time.Time
	typ, detail string
}

// broken returns what is remembered of ip, if it has not expired.
func (tm *tlsMemory) broken(ip netip.Addr, now time.Time) (brokenTLS, bool) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	b, ok := tm.m[ip]
	if ok && !now.Before(b.until) {
		delete(tm.m, ip)
		return brokenTLS{}, false
	}
	return b, ok
}

// remember records ip's failure; fresh is false when it was remembered
// already (the caller logs fresh ones only: once per address and period).
func (tm *tlsMemory) remember(ip netip.Addr, b brokenTLS, now time.Time) (fresh bool) {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	if tm.m == nil {
		tm.m = map[netip.Addr]brokenTLS{}
	}
	old, ok := tm.m[ip]
	fresh = !ok || !now.Before(old.until)
	if len(tm.m) >= maxTLSMemory && !ok {
		for k, v := range tm.m {
			if !now.Before(v.until) {
				delete(tm.m, k)
			}
		}
		if len(tm.m) >= maxTLSMemory {
			return fresh // full of live entries: this one is not kept
		}
	}
	tm.m[ip] = b
	return fresh
}

// tlsSkipped reports whether opportunistic STARTTLS to ip is skipped now.
func (q *Queue) tlsSkipped(ip netip.Addr) bool {
	if q.config().TLSFailureMemory <= 0 {
		return false
	}
	_, ok := q.tlsMem.broken(ip, q.now())
	return ok
}

// rememberBrokenTLS remembers t's address after a failed opportunistic
// handshake (a refused STARTTLS costs nothing and is not remembered) and
// logs it once per address and period; false when nothing was remembered
// (the caller logs the failure itself).
func (q *Queue) rememberBrokenTLS(t target, terr error) bool {
	var se *smtpclient.Error
	d := q.config().TLSFailureMemory
	if d <= 0 || !t.ip.IsValid() || !errors.As(terr, &se) || se.Command != "TLS" {
		return false
	}
	now := q.now()
	if q.tlsMem.remember(t.ip, brokenTLS{until: now.Add(d), typ: tlsrpt.Classify(terr), detail: tlsDetail(terr)}, now) {
		q.deps.Logger.Warn("STARTTLS handshake failed: opportunistic mail to this MX address goes in clear text, without trying STARTTLS, for [delivery] tls_failure_memory",
			"mx", t.host, "ip", t.ip.String(), "for", d.String(), "err", terr)
	}
	return true
}

// tlsState is what the delivery log says of a connection's TLS.
type tlsState struct {
	on   bool
	info string // "TLS1.3 TLS_AES_128_GCM_SHA256 verified"
}

func tlsOf(c *smtpclient.Client) tlsState {
	cs := c.TLSConnectionState()
	if cs == nil {
		return tlsState{}
	}
	info := strings.ReplaceAll(tls.VersionName(cs.Version), " ", "") + " " + tls.CipherSuiteName(cs.CipherSuite)
	if c.Verified() {
		info += " verified"
	} else {
		info += " unverified"
	}
	return tlsState{on: true, info: info}
}
