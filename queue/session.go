package queue

import (
	"context"
	"errors"
	"fmt"
	"github.com/penstock-mta/penstock/bounce"
	"github.com/penstock-mta/penstock/caps"
	"github.com/penstock-mta/penstock/flow"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/penstock-mta/penstock/dns"
	"github.com/penstock-mta/penstock/quota"
	"github.com/penstock-mta/penstock/smtpclient"
)

// session owns one SMTP connection: it delivers the job the runner claimed
// for it, then keeps claiming due jobs of the same site (connection reuse)
// until none is due, the rule's messages per connection is reached, or the
// connection breaks. An idle session connected where another site's job is
// headed takes that job and becomes that site's session (share.go): the
// runner offers it there before it starts a session that dials.
func (s *site) session(lease quota.Lease, p path, first *job, lim limits) {
	q := s.q
	defer func() {
		// s, lease, p and lim are the site's this connection serves last.
		s.endSession(lease, p, lim)
		q.wg.Done()
	}()

	c, t, via, err := s.dial(p, lim, first.domain.Value())
	if err != nil {
		q.fail(attempt{j: first, s: s, t: t, p: p, lim: lim, now: q.now()}, err, true)
		return
	}
	if r := lim.match.Rule; r != nil {
		q.opened.add(r.Name)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(q.ctx, 5*time.Second)
		_ = c.Quit(ctx)
		cancel()
	}()
	// The quota keys the connection holds, so that a runner refused
	// under one of them can ask it to close while it idles (yield.go).
	// Registered once per connection, not at each linger.
	y := q.yields.watchShared(s, lingerKeys(lease.Key(), lim.caps, t.ip), shareKeyOf(t, p, lim), len(lim.caps) > 0, leafOf(c))
	defer func() { q.yields.unwatch(y) }()
	sent := 0
	j := first
	for {
		sent++
		s.deliver(c, via, j, t, p, lim, sent)
		if c.Broken() || (lim.maxMsgs > 0 && sent >= lim.maxMsgs) || q.isClosed() || !s.mayGoOn(lim, p, lease) {
			return
		}
		var h *handover
		if j, h = s.next(lim, lease, p, y); h != nil {
			// Another site's job at this address: the connection is
			// that site's session from now on.
			q.yields.unwatch(y)
			if h.keep {
				// The job counts under this connection's own lease,
				// a key both sites count under (lendHeld).
				s.leaveSite(p, lim)
			} else {
				s.endSession(lease, p, lim)
				lease = h.lease
			}
			y = h.adopt(c, lease)
			s, p, lim, t, via, j = h.s, h.p, h.lim, h.t, "", h.j
		}
		if j == nil {
			return
		}
	}
}

// endSession gives up a session's part in its site: its lease, its count
// among the site's sessions and any probe it was; the runner looks again.
func (s *site) endSession(lease quota.Lease, p path, lim limits) {
	lease.Release()
	s.leaveSite(p, lim)
}

// leaveSite is endSession for a connection that keeps its lease.
func (s *site) leaveSite(p path, lim limits) {
	s.mu.Lock()
	s.active--
	if lim.probe {
		s.probing = false
	}
	if lim.srcProbe {
		delete(s.probingSrc, sourceIP(p.src))
	}
	s.mu.Unlock()
	s.poke()
}

// mayGoOn reports whether a session with its connection open may claim
// another job: flow control may have held the site or the session's
// source meanwhile (a reply matched a suspend pattern, errors in a row),
// and a cluster lease Redis could not renew may belong to another node
// now. It is asked after each message and again before a lingering
// session claims, so a hold stops the connection at once, not after the
// rule's messages per connection.
func (s *site) mayGoOn(lim limits, p path, lease quota.Lease) bool {
	q := s.q
	if q.deps.Flow != nil && !lim.probe {
		if q.deps.Flow.Holds(s.key, q.now()) {
			return false
		}
		if !lim.srcProbe && q.sourceHeld(s.key, p.src, q.now()) {
			// This source is held now; the pool's others go on.
			return false
		}
	}
	if v, ok := lease.(quota.Revocable); ok && !v.Valid() {
		return false
	}
	return true
}

// next claims the site's next due job for a session whose connection is
// open, lingering for one when none is due; nil when none came, or another
// site's job handed over while it lingered (share.go). Meanwhile
// the session counts as idle and the runner opens no other session for
// the site (step); the runner looks again when the session stops looking,
// with a job (more may be due) or without.
func (s *site) next(lim limits, lease quota.Lease, p path, y *yieldWatch) (*job, *handover) {
	s.mu.Lock()
	s.idle++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.idle--
		wake := s.runnerWaits
		s.runnerWaits = false
		s.mu.Unlock()
		if wake {
			s.poke()
		}
	}()
	if j, _ := s.claim(lim, lease.Key()); j != nil {
		return j, nil
	}
	return s.linger(lim, lease, p, y)
}

// lingerFor is how long an idle session keeps its connection for the next
// job of its site: Postfix's smtp_connection_cache_time_limit, 2 s. Mail
// arriving a few at a time then reuses the connection instead of dialling
// for each message: with 1,000 sites sharing 2,000 messages a second, each
// site sees one about every 0.5 s, and a shorter window closed and
// reopened most connections (see BENCHMARKS.md, Performance II). An idle
// connection keeps its lease; it gives it up at once when a runner is
// refused a connection under one of its quota keys (yield).
const lingerFor = 2 * time.Second

// linger waits up to q.lingerFor for a job to become due on the site and
// claims it; nil when none came, when the queue closes, when flow control
// held the site meanwhile (mayGoOn), or when another site needs the
// connection quota this one holds (y, closed by yields.contend). A job of
// another site handed over meanwhile (y.offers) is returned as h.
func (s *site) linger(lim limits, lease quota.Lease, p path, y *yieldWatch) (j *job, h *handover) {
	deadline := time.NewTimer(s.q.lingerFor)
	defer deadline.Stop()
	yields := &s.q.yields
	yields.setIdle(y, true)
	for {
		select {
		case <-y.ch:
			return nil, yields.leave(y) // asked to yield: before any job of its own
		default:
		}
		now := s.q.now()
		s.mu.Lock()
		if len(s.jobs) > 0 && !s.jobs[0].due.After(now) {
			s.mu.Unlock()
			// Not idle while it claims: a job lent meanwhile comes first.
			if h := yields.leave(y); h != nil {
				return nil, h
			}
			if !s.mayGoOn(lim, p, lease) {
				return nil, nil
			}
			if j, _ := s.claim(lim, lease.Key()); j != nil {
				return j, nil
			}
			// Taken by another session, or no rate token: wait again.
			yields.setIdle(y, true)
			s.mu.Lock()
		}
		// The channel is taken under the same lock as the check above, so
		// a push between them cannot be missed.
		if s.arrivals == nil {
			s.arrivals = make(chan struct{})
		}
		ch := s.arrivals
		s.mu.Unlock()
		select {
		case <-ch:
		case <-y.offers:
			return nil, yields.leave(y)
		case <-y.ch:
			return nil, yields.leave(y)
		case <-deadline.C:
			return nil, yields.leave(y)
		case <-s.q.closing:
			return nil, yields.leave(y)
		}
	}
}

// lingerKeys are the keys under which an idle session may be asked to
// close: its lease's and those of its caps that count connections (quota
// it holds), and its MX address (a slot at a receiver that stopped
// greeting, see greetPatience).
func lingerKeys(leaseKey string, cs []*caps.Cap, mx netip.Addr) []string {
	keys := []string{leaseKey}
	for _, c := range cs {
		if c.MaxConnections > 0 {
			keys = append(keys, c.ConnKey())
		}
	}
	if mx.IsValid() {
		keys = append(keys, addrKey(mx))
	}
	return keys
}

// addrKey is the yield key of the connections to one MX address.
func addrKey(mx netip.Addr) string { return "addr|" + mx.String() }

// greetPatience is how long a new connection waits for its greeting
// before the idle connections of other sites to the same MX address are
// asked to close, one each time it runs out. A receiver at its limit of
// simultaneous sessions (every server process busy; Postfix's smtp-sink
// at -m) leaves further connections in its listen queue without a word,
// and when the sessions it serves are our own lingering ones (sites with
// their own MX names on one address, as a hosting provider's are) the
// new one would wait for their linger, or with mail arriving within each
// linger, until its command timeout. Greetings normally come within a
// round trip; one slower than this costs at most an idle connection that
// another site would have reused.
const greetPatience = 500 * time.Millisecond

// dial connects to the first MX address that answers with a usable
// greeting, in MX preference order (RFC 5321 §5.1: on a connection failure
// or a 4xx greeting the next address is tried).
// domain is the recipient domain of the job that opened it (TLS reports).
// via is the policy that authenticated the connection (verifiedBy), for
// REQUIRETLS messages.
func (s *site) dial(p path, lim limits, domain string) (c *smtpclient.Client, t target, via string, err error) {
	q := s.q
	cfg := q.config()
	var targets []target
	var lookupErr error
	if p.fixed != nil {
		targets = []target{*p.fixed}
	} else {
		s.mu.Lock()
		hosts := append([]dns.MX(nil), s.hosts...)
		s.mu.Unlock()
		ctx, cancel := context.WithTimeout(q.ctx, 30*time.Second)
		targets, lookupErr = s.lookupTargets(ctx, cfg, hosts)
		cancel()
	}
	if len(targets) == 0 {
		if resourceFailure(lookupErr) {
			// The resolver had no socket: ours, not the site's.
			return nil, target{}, "", &smtpclient.Error{Command: "connect", Local: true,
				Err: fmt.Errorf("no address looked up for the MX hosts of %s: %w", s.key, lookupErr)}
		}
		err := &smtpclient.Error{Command: "connect", Local: true, Err: fmt.Errorf("no address found for the MX hosts of %s", s.key)}
		q.flowRecord(flow.Event{Site: s.key, Err: true, Local: true, DNS: true, Text: err.Error()})
		return nil, target{}, "", err
	}
	mode := lim.tls()
	pol := s.policyOf()
	if targets, err = s.policyTargets(pol, domain, targets); err != nil {
		s.setPolicyErr(err)
		s.recordTLS(pol, domain, mode, target{}, nil, err)
		return nil, target{}, "", err
	}
	var lastErr error
	var lastT target
	for _, t := range targets {
		opts := smtpclient.Options{
			LocalAddr:      p.src.IP,
			EHLO:           p.src.EHLO,
			TLS:            mode,
			TLSConfig:      q.deps.TLSConfig,
			ServerName:     t.host,
			ConnectTimeout: lim.connTimeout,
			CommandTimeout: lim.cmdTimeout,
			DataTimeout:    lim.dataTimeout,
			NoChunking:     lim.noChunking,
			Dialer:         q.deps.Dialer,
		}
		if opts.EHLO == "" {
			opts.EHLO = cfg.Hostname
		}
		failed := s.policyOptions(pol, domain, t, &opts)
		skipped := opts.TLS == smtpclient.TLSOpportunistic && q.tlsSkipped(t.ip)
		if skipped {
			opts.TLS = smtpclient.TLSDisabled // its handshake failed recently
		}
		addr := net.JoinHostPort(t.ip.String(), strconv.Itoa(cfg.Port))
		ctx := q.ctx
		c, err := s.dialAddr(ctx, addr, t, opts)
		err = s.policyDial(pol, domain, t, c, err, *failed)
		s.setPolicyErr(err)
		s.recordTLS(pol, domain, mode, t, c, err)
		if err == nil && skipped {
			q.reportSkippedTLS(pol, domain, t)
		}
		if err == nil {
			if terr := c.TLSError(); terr != nil && !q.rememberBrokenTLS(t, terr) {
				q.deps.Logger.Info("STARTTLS failed, delivering in clear text (tls = opportunistic)",
					"site", s.key, "mx", t.host, "ip", t.ip.String(), "err", terr)
			}
			return c, t, verifiedBy(pol, t, c, *failed), nil
		}
		lastErr, lastT = err, t
		if resourceFailure(err) {
			// Our descriptors or buffers ran out (EMFILE, ENOBUFS): not
			// the site's doing, so flow control hears nothing, and the
			// next address would fail the same way.
			s.remember(replyOf(err, t, q.now()))
			break
		}
		ev := flow.Event{Site: s.key, Path: p.String(t), Err: true, Text: err.Error()}
		var se *smtpclient.Error
		if errors.As(err, &se) {
			ev.Local = se.Local
			ev.Code, ev.Enhanced = se.Reply.Code, se.Reply.Enhanced
			if se.Reply.Code != 0 {
				ev.Text = se.Reply.Text
			}
			if se.Permanent && se.Command != "greeting" {
				break
			}
		}
		q.flowRecord(ev)
		s.remember(replyOf(err, t, q.now()))
		if q.ctx.Err() != nil {
			break
		}
	}
	return nil, lastT, "", lastErr
}

// dialAddr dials one MX address. While it waits for the greeting, idle
// connections of ours to the address are asked to close (nudge). A 4xx
// greeting while one of them is open ("421 Too many connections": a
// receiver's limit per client address, counting our other sites' idle
// connections) closes it, and the dial is tried once more after
// refusedPause: the refusal was of our own making, so the site's flow
// control does not hear of it. A refusal with none of ours to close
// stands.
func (s *site) dialAddr(ctx context.Context, addr string, t target, opts smtpclient.Options) (*smtpclient.Client, error) {
	y, key := &s.q.yields, addrKey(t.ip)
	for try := 0; ; try++ {
		stop := y.nudge(key, s, greetPatience)
		c, err := smtpclient.Dial(ctx, addr, opts)
		stop()
		var se *smtpclient.Error
		if err == nil || try > 0 || !errors.As(err, &se) || se.Command != "greeting" || se.Reply.Code/100 != 4 {
			return c, err
		}
		if !y.overfull(key, s, time.Now()) {
			return nil, err
		}
		pause := time.NewTimer(refusedPause)
		select {
		case <-pause.C:
		case <-ctx.Done():
			pause.Stop()
			return nil, err
		}
	}
}

// refusedPause is how long a dial refused at the greeting waits, after
// asking an idle connection of ours to the address to close, before it
// tries again: the time for that connection's QUIT to reach the receiver.
const refusedPause = 250 * time.Millisecond

func (q *Queue) flowRecord(ev flow.Event) {
	if q.deps.Flow == nil {
		return
	}
	if ev.Time.IsZero() {
		ev.Time = q.now()
	}
	q.deps.Flow.Record(ev)
}

func replyOf(err error, t target, now time.Time) Reply {
	r := Reply{Time: now, MXHost: t.host, Text: err.Error(), Local: bounce.OurSide(bounce.KindOf(err))}
	if t.ip.IsValid() {
		r.MXIP = t.ip.String()
	}
	var se *smtpclient.Error
	if errors.As(err, &se) && se.Reply.Code != 0 {
		r.Code, r.Enhanced, r.Text, r.Local = se.Reply.Code, se.Reply.Enhanced, se.Reply.Text, false
	}
	return r
}

// deliver sends one job on an open connection and applies the results.
// via is the policy that authenticated the connection ("" for none); use
// is the transaction's place on the connection (1: the first).
func (s *site) deliver(c *smtpclient.Client, via string, j *job, t target, p path, lim limits, use int) {
	q := s.q
	m, err := q.hold(j.e)
	if err != nil {
		q.unreadable(j, s, err)
		return
	}
	defer q.drop(j.e)
	from := m.Sender
	if q.deps.ReturnPath != nil {
		from = q.deps.ReturnPath(m, j.rcpts)
	}
	snd, err := q.deps.Pipeline.Build(q.ctx, m, j.rcpts, from)
	if err != nil {
		// Our own failure, before any command: reported to nobody (the
		// site did nothing), and the connection stays usable.
		q.fail(attempt{j: j, s: s, t: t, p: p, lim: lim, now: q.now()}, err, true)
		return
	}
	// Send writes the message before it returns; nothing keeps it after.
	defer q.deps.Pipeline.Release(snd)
	rcpts := make([]string, len(j.rcpts))
	for i, ri := range j.rcpts {
		rcpts[i] = m.Recipients[ri].Addr
	}
	requireTLS := q.deps.RequireTLS != nil && q.deps.RequireTLS(m)
	if requireTLS && via == "" {
		// RFC 8689 §4.2.1: only over TLS authenticated by DANE or by the
		// domain's MTA-STS policy; a certificate that merely chains to
		// public roots is not enough. Nothing was sent; the connection
		// stays usable for the site's other mail.
		q.fail(attempt{j: j, s: s, t: t, p: p, lim: lim, tls: tlsOf(c), now: q.now()}, requireTLSRefused(j.domain.Value(), t.host), true)
		return
	}
	c.SetRequireTLS(requireTLS)
	res, err := c.Send(q.ctx, snd.From, rcpts, snd.Data)
	q.complete(attempt{j: j, s: s, t: t, p: p, lim: lim, tls: tlsOf(c), notes: snd.Results(), connUse: use}, res, err)
}
