package queue

import (
	"errors"
	"github.com/penstock-mta/penstock/flow"
	"strconv"
	"strings"
	"time"

	"github.com/penstock-mta/penstock/bounce"
	"github.com/penstock-mta/penstock/dns"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/message"
	"github.com/penstock-mta/penstock/smtpclient"
	"github.com/penstock-mta/penstock/spool"
)

// Outcome is what happened to one recipient in one attempt.
type Outcome struct {
	Delivered bool
	Expired   bool
	Final     bool // the recipient's delivery is over (delivered, bounced, expired, cancelled)
	Cancelled bool // its campaign was cancelled
	skip      bool // the recipient was already final (purged meanwhile)
	Code      int
	Enhanced  string
	Text      string
	Local     bool   // no remote reply: our side or the network
	Permanent bool   // a local error that will not heal (NXDOMAIN, null MX)
	Kind      string // without a reply: bounce.KindOf the error (bounce.Local*)
	// Err is the failure as it happened, its chain intact (nil for a
	// delivery or a reply), so that kinds are told by errors.Is/As.
	Err     error
	Verdict bounce.Verdict
	notes   string // what the body stages did (message.Send.Results), for the log
}

// outcomeOf turns a client error into an outcome.
func outcomeOf(err error) Outcome {
	var me *message.Error
	if errors.As(err, &me) {
		// The message could not be built: nothing was sent. A permanent
		// cause (a rendered header that is invalid) fails the recipient at
		// once; a temporary one (reading the spool) is retried.
		o := Outcome{Local: true, Text: err.Error(), Permanent: me.Permanent, Err: err}
		if me.Permanent {
			o.Kind = bounce.LocalBadMessage
		}
		return o
	}
	var se *smtpclient.Error
	if errors.As(err, &se) {
		o := Outcome{Code: se.Reply.Code, Enhanced: se.Reply.Enhanced, Text: se.Reply.Text, Local: se.Reply.Code == 0, Err: err}
		if o.Local {
			o.Text = err.Error()
			o.Permanent = se.Permanent
			o.Kind = kindOf(se)
			if errors.Is(err, smtpclient.ErrRequireTLS) {
				o.Enhanced = "5.7.10" // RFC 8689 §6: REQUIRETLS support required
			}
			if se.Permanent {
				// Refused before sending (a sender the client cannot put
				// in MAIL FROM, a size the server announced it refuses):
				// no retry changes it, and neither the site nor the
				// address is at fault.
				o.Kind = bounce.LocalBadMessage
			}
		}
		return o
	}
	var de *dns.Error
	if errors.As(err, &de) {
		o := Outcome{Local: true, Text: err.Error(), Permanent: de.Permanent(), Err: err}
		switch {
		case de.Kind == dns.NXDomain:
			o.Kind = bounce.LocalDNSNXDomain
		case de.Kind == dns.NullMX:
			o.Kind = bounce.LocalDNSNullMX
		case de.Kind == dns.NoHost:
			o.Kind = bounce.LocalDNSNoHost
		default:
			o.Kind = bounce.LocalDNSTemp
		}
		return o
	}
	// An unknown error is temporary (docs/ARCHITECTURE.md §5, invariant 6).
	return Outcome{Local: true, Text: err.Error(), Kind: bounce.KindOf(err), Err: err}
}

// kindOf names a client failure that has no reply: by its cause's chain,
// except that a failure during STARTTLS is the handshake's unless its cause
// says more (a certificate, our resources), and an unnamed failure to
// connect is a connect failure.
func kindOf(se *smtpclient.Error) string {
	k := bounce.KindOf(se.Err)
	switch {
	case k == bounce.LocalResources || k == bounce.LocalCertificate || k == bounce.LocalTimeout:
	case se.Command == "STARTTLS" || se.Command == "TLS":
		return bounce.LocalTLS
	case se.Command == "connect" && k == bounce.LocalNetwork:
		return bounce.LocalConnect
	}
	return k
}

// resourceFailure reports whether err is our own exhaustion of descriptors
// or buffers (EMFILE, ENFILE, ENOBUFS, ENOMEM): it says nothing about the
// remote site, and flow control must never count it against one.
func resourceFailure(err error) bool {
	return err != nil && bounce.KindOf(err) == bounce.LocalResources
}

func (q *Queue) classify(o *Outcome) {
	if o.Delivered || q.deps.Bounce == nil {
		return
	}
	if o.Code == 0 {
		o.Verdict = q.deps.Bounce.ClassifyLocal(o.Kind, o.Err)
	} else {
		o.Verdict = q.deps.Bounce.Classify(o.Code, o.Enhanced, o.Text)
	}
}

// hard reports whether an outcome ends the recipient's delivery.
func (o *Outcome) hard() bool {
	if o.Delivered {
		return true
	}
	if o.Verdict.Class != "" {
		if o.Verdict.Class == bounce.Hard {
			return true
		}
		// RFC 5321 §4.2.1: a 5yz reply is permanent. One that no rule
		// recognises ends the delivery (a bounce) without being held
		// against the address: its class stays soft, so the quarantine
		// does not count it; retrying it for days would only annoy the
		// receiver.
		return o.Verdict.Reason == bounce.Unknown && o.Code >= 500
	}
	if o.Code != 0 {
		return o.Code >= 500
	}
	return o.Permanent
}

// siteError reports whether an outcome counts against the site in flow
// control: everything but recipient-level rejections (unknown user,
// mailbox full, disabled account) that say nothing about how the site
// treats us.
func (o *Outcome) siteError() bool {
	if o.Delivered {
		return false
	}
	if o.Verdict.Reason.RecipientLevel() || o.Verdict.Reason == bounce.BadMessage || o.Kind == bounce.LocalResources {
		return false
	}
	if o.Code >= 500 && o.Verdict.Reason == "" {
		return false
	}
	return true
}

// attempt is one attempt at a job: where it went and how. Only j is
// always set: a job that never reached a site (MX lookup) has no s, and
// one that never reached a host no t or p.
type attempt struct {
	j   *job
	s   *site
	t   target
	p   path
	lim limits
	tls tlsState // the transaction's TLS: used, verified, version and cipher
	now time.Time
	// notes are what the body stages did (message.Send.Results), for the
	// delivery log.
	notes string
	// connUse is the transaction's place on its connection (1: the
	// first); 0 when none was made.
	connUse int
}

// complete applies the result of a transaction to the job's recipients.
func (q *Queue) complete(a attempt, res *smtpclient.Result, err error) {
	a.now = q.now()
	outs := make([]Outcome, len(a.j.rcpts))
	for i := range a.j.rcpts {
		switch {
		case res == nil && err != nil:
			outs[i] = outcomeOf(err)
		case res != nil && i < len(res.Rcpts) && res.Rcpts[i].Err != nil:
			outs[i] = outcomeOf(res.Rcpts[i].Err)
		case err != nil:
			outs[i] = outcomeOf(err) // the DATA reply applies to every accepted recipient
		default:
			outs[i] = Outcome{Delivered: true}
			if res != nil {
				outs[i].Code, outs[i].Enhanced, outs[i].Text = res.Data.Code, res.Data.Enhanced, res.Data.Text
			}
		}
		outs[i].notes = a.notes
	}
	q.apply(a, outs, true)
}

// fail applies one error to every recipient of a job (no transaction took
// place, e.g. no connection could be made).
// The caller has reported the error to flow control when it came from a
// connection attempt (dial reports each address it tries).
func (q *Queue) fail(a attempt, err error, reported bool) {
	o := outcomeOf(err)
	outs := make([]Outcome, len(a.j.rcpts))
	for i := range outs {
		outs[i] = o
	}
	q.apply(a, outs, !reported)
}

// failJob is fail for a job that never reached a site (MX lookup).
func (q *Queue) failJob(j *job, err error, now time.Time) {
	q.fail(attempt{j: j, now: now}, err, false)
}

func (q *Queue) expire(j *job, s *site, now time.Time) {
	outs := make([]Outcome, len(j.rcpts))
	for i := range outs {
		outs[i] = Outcome{Expired: true}
	}
	q.apply(attempt{j: j, s: s, now: now}, outs, false)
}

// apply updates the recipients, writes the spool durably, logs one record
// per recipient, reports to flow control and reschedules what remains.
func (q *Queue) apply(a attempt, outs []Outcome, reportFlow bool) {
	j, s, t, p, lim, tls, now := a.j, a.s, a.t, a.p, a.lim, a.tls, a.now
	cfg := q.config()
	for i := range outs {
		q.classify(&outs[i])
	}
	e := j.e
	m, err := q.hold(e) // dropped once the update below is durable (awaitDurable)
	if err != nil {
		q.unreadable(j, s, err)
		return
	}
	recs := make([]events.Record, 0, len(outs))
	var keep []int
	var due time.Time
	siteKey, ruleName, polNote, tlsPolicy := "", "", "", ""
	if s != nil {
		siteKey = s.key
		pol := s.policyOf()
		polNote = policyNote(pol)
		tlsPolicy = policyName(pol, lim.tlsMode)
	}
	if lim.match.Rule != nil {
		ruleName = lim.match.Rule.Name
	}
	mxIP := ""
	if t.ip.IsValid() {
		mxIP = t.ip.String()
	}

	mu := q.lockOf(e)
	mu.Lock()
	for i, ri := range j.rcpts {
		o := &outs[i]
		r := &m.Recipients[ri]
		if r.State.Final() {
			o.skip = true // purged meanwhile
			continue
		}
		rec := events.Record{
			Time: now, ID: m.ID.String(), DeliveryID: m.DeliveryID, Sender: m.Sender, Recipient: r.Addr,
			Site: siteKey, MXHost: t.host, MXIP: mxIP, SourceIP: ipOrEmpty(p.src), Rule: ruleName,
			Code: o.Code, EnhancedCode: o.Enhanced, Text: o.Text, Reason: string(o.Verdict.Reason),
			Class: string(o.Verdict.Class), TLS: tls.on, TLSInfo: tls.info, Size: m.Size, Detail: o.notes,
			ConnUse: a.connUse,
		}
		if polNote != "" && !o.Expired {
			rec.Detail = strings.TrimPrefix(rec.Detail+"; "+polNote, "; ")
		}
		if !o.Expired {
			rec.TLSPolicy = tlsPolicy
		}
		if !o.Expired {
			r.Attempts++
			r.LastCode = uint16(o.Code)
			r.LastEnhanced = o.Enhanced
			r.LastText = o.Text
		}
		rec.Attempt = int(r.Attempts)
		switch {
		case o.Expired:
			r.State = spool.Expired
			rec.Type = events.Expiration
			rec.Code, rec.EnhancedCode, rec.Text = int(r.LastCode), r.LastEnhanced, r.LastText
			rec.Status = "validity period expired"
		case o.Delivered:
			r.State = spool.Delivered
			rec.Type = events.Delivery
		case o.hard():
			r.State = spool.Bounced
			rec.Type = events.Bounce
		case q.isCancelled(m.DeliveryID):
			// Back from a connection while its campaign was cancelled.
			r.State = spool.Cancelled
			rec.Type = events.AdminAction
			rec.Status = "cancelled (the delivery was cancelled)"
			o.Cancelled = true
		default:
			next := now.Add(q.retryAfter(cfg, int(r.Attempts), o))
			if !m.Expires.IsZero() && next.After(m.Expires) {
				r.State = spool.Expired
				rec.Type = events.Expiration
				rec.Status = "validity period expired: " + replyText(o)
				break
			}
			r.NextAttempt = next
			rec.Type = events.TransientFailure
			rec.Status = StatusRetry + ": " + replyText(o)
			if pe := (*policyError)(nil); errors.As(o.Err, &pe) {
				rec.Status = pe.status() + ": " + replyText(o)
			}
			keep = append(keep, ri)
			if next.After(due) {
				due = next
			}
		}
		if r.State.Final() {
			e.pending--
			o.Final = true
			o.Expired = r.State == spool.Expired
		}
		recs = append(recs, rec)
	}
	over := e.pending == 0
	mu.Unlock()
	if over {
		q.deps.Pipeline.Forget(m.ID)
	}

	// The owner's hook sees each outcome before the spool forgets the
	// message (a DSN to the sender quotes its headers).
	if q.deps.Outcome != nil {
		for i, ri := range j.rcpts {
			if !outs[i].skip {
				q.deps.Outcome(m, ri, outs[i], siteKey)
			}
		}
	}

	// The session goes on without waiting for this update to be durable:
	// the committer batches it with the others in flight. Until it commits,
	// a crash would only send this message again (it is in flight), never
	// lose it. q.durable bounds how many may be outstanding.
	mu.Lock()
	done := q.deps.Spool.UpdateAsync(m)
	mu.Unlock()
	q.durable <- pendingUpdate{e: e, done: done}

	for i := range recs {
		q.deps.Log.Write(&recs[i])
		q.count(s, recs[i].Type, now)
	}
	if reportFlow {
		q.report(s, outs, t, p, now)
	}

	if len(keep) > 0 {
		if s != nil {
			s.keepRcpts(j, keep)
		} else {
			j.rcpts = keep
		}
		j.due = dueOf(due)
	}
	if s == nil {
		if len(keep) > 0 {
			q.route(j)
		}
		return
	}
	s.release(j, len(keep) > 0)
}

// pendingUpdate is a spool update not yet known to be durable.
type pendingUpdate struct {
	e    *entry // held until the update is durable
	done <-chan error
}

// maxPendingUpdates bounds the delivered-but-not-yet-durable outcomes: at
// most that many messages could be sent again after a crash.
const maxPendingUpdates = 256

// awaitDurable collects the results of asynchronous spool updates, in
// commit order, until the channel is closed.
func (q *Queue) awaitDurable() {
	defer close(q.durableDone)
	for p := range q.durable {
		if err := <-p.done; err != nil && !errors.Is(err, spool.ErrNotFound) {
			// The spool keeps the previous state: after a restart the
			// recipient is tried again, which may send it twice but
			// never loses it.
			q.deps.Logger.Error("spool update failed", "id", p.e.id.String(), "err", err)
		}
		q.drop(p.e)
	}
}

// report feeds flow control and the site's recent replies with one
// transaction's outcome.
func (q *Queue) report(s *site, outs []Outcome, t target, p path, now time.Time) {
	if s == nil || len(outs) == 0 {
		return
	}
	var bad *Outcome
	ok := false
	for i := range outs {
		o := &outs[i]
		if o.Expired {
			return
		}
		switch {
		case o.Kind == bounce.LocalResources, o.Verdict.Reason == bounce.BadMessage:
			// Ours: neither an error nor a success of the site.
		case o.siteError():
			if bad == nil {
				bad = o
			}
		default:
			ok = true
		}
	}
	if bad == nil && !ok {
		// Nothing that speaks for or against the site (our own
		// resources ran out, or messages we could not build): flow
		// control hears nothing.
		for i := range outs {
			if !outs[i].Delivered && outs[i].Verdict.Reason != bounce.BadMessage {
				s.remember(Reply{Time: now, Text: outs[i].Text, MXHost: t.host, MXIP: ipString(t), Local: true})
				break
			}
		}
		return
	}
	ev := flow.Event{Time: now, Site: s.key}
	if t.ip.IsValid() {
		ev.Path = p.String(t)
	}
	if bad != nil {
		ev.Err, ev.Local, ev.Code, ev.Enhanced, ev.Text = true, bad.Local, bad.Code, bad.Enhanced, bad.Text
	} else {
		ev.OK = ok
	}
	q.flowRecord(ev)
	for i := range outs {
		o := &outs[i]
		if o.Delivered || o.Verdict.Reason == bounce.BadMessage {
			continue
		}
		s.remember(Reply{Time: now, Code: o.Code, Enhanced: o.Enhanced, Text: o.Text, MXHost: t.host, MXIP: ipString(t),
			Local: o.Code == 0 && bounce.OurSide(bounce.KindOf(o.Err))})
		break
	}
}

func (q *Queue) count(s *site, typ events.Type, now time.Time) {
	switch typ {
	case events.Delivery:
		q.counters.delivered.Add(1)
	case events.Bounce:
		q.counters.bounced.Add(1)
	case events.TransientFailure:
		q.counters.deferred.Add(1)
	case events.Expiration:
		q.counters.expired.Add(1)
	}
	if s == nil {
		return
	}
	s.mu.Lock()
	switch typ {
	case events.Delivery:
		s.stats.delivered++
		s.stats.addHour(now)
	case events.Bounce:
		s.stats.bounced++
	case events.TransientFailure:
		s.stats.deferred++
	case events.Expiration:
		s.stats.expired++
	}
	s.mu.Unlock()
}

// retryAfter is the wait before attempt n+1: the retry schedule, whose last
// interval repeats, unless the bounce rule sets its own.
func (q *Queue) retryAfter(cfg *Config, attempts int, o *Outcome) time.Duration {
	if o.Verdict.Retry > 0 {
		return o.Verdict.Retry
	}
	i := attempts - 1
	if i < 0 {
		i = 0
	}
	if i >= len(cfg.Retry) {
		i = len(cfg.Retry) - 1
	}
	return cfg.Retry[i]
}

func replyText(o *Outcome) string {
	if o.Code == 0 {
		return o.Text
	}
	s := strconv.Itoa(o.Code)
	if o.Enhanced != "" {
		s += " " + o.Enhanced
	}
	return s + " " + o.Text
}

func ipOrEmpty(s Source) string {
	if s.IP.IsValid() {
		return s.IP.String()
	}
	return ""
}

func ipString(t target) string {
	if t.ip.IsValid() {
		return t.ip.String()
	}
	return ""
}
