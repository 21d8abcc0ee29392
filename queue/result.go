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
	Local     bool // no remote reply: our side or the network
	Permanent bool // a local error that will not heal (NXDOMAIN, null MX)
	Kind      string
	Verdict   bounce.Verdict
}

// outcomeOf turns a client error into an outcome.
func outcomeOf(err error) Outcome {
	var se *smtpclient.Error
	if errors.As(err, &se) {
		o := Outcome{Code: se.Reply.Code, Enhanced: se.Reply.Enhanced, Text: se.Reply.Text, Local: se.Reply.Code == 0, Kind: kindOf(se)}
		if o.Local {
			o.Text = err.Error()
			o.Permanent = se.Permanent
		}
		return o
	}
	var de *dns.Error
	if errors.As(err, &de) {
		o := Outcome{Local: true, Text: err.Error(), Permanent: de.Permanent()}
		switch {
		case de.Kind == dns.NXDomain:
			o.Kind = "dns-nxdomain"
		case de.Kind == dns.NullMX:
			o.Kind = "dns-nullmx"
		case de.Kind == dns.NoHost:
			o.Kind = "dns-nohost"
		default:
			o.Kind = "dns-temp"
		}
		return o
	}
	// An unknown error is temporary (docs/ARCHITECTURE.md §5, invariant 6).
	return Outcome{Local: true, Text: err.Error(), Kind: "network"}
}

func kindOf(se *smtpclient.Error) string {
	if se.Reply.Code != 0 {
		return ""
	}
	switch {
	case se.Command == "connect":
		if strings.Contains(se.Error(), "timeout") || strings.Contains(se.Error(), "deadline") {
			return "timeout"
		}
		return "connect"
	case se.Command == "STARTTLS" || se.Command == "TLS":
		return "tls"
	case strings.Contains(se.Error(), "timeout") || strings.Contains(se.Error(), "deadline"):
		return "timeout"
	}
	return "network"
}

func (q *Queue) classify(o *Outcome) {
	if o.Delivered || q.deps.Bounce == nil {
		return
	}
	if o.Code == 0 {
		o.Verdict = q.deps.Bounce.ClassifyLocal(o.Kind, errors.New(o.Text))
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
		return o.Verdict.Class == bounce.Hard
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
	switch o.Verdict.Reason {
	case bounce.UserUnknown, bounce.MailboxFull, bounce.AccountDisabled, bounce.InvalidDomain:
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
	tls bool // the transaction ran over TLS
	now time.Time
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
	m := e.m
	recs := make([]events.Record, 0, len(outs))
	var keep []int
	var due time.Time
	siteKey, ruleName := "", ""
	if s != nil {
		siteKey = s.key
	}
	if lim.match.Rule != nil {
		ruleName = lim.match.Rule.Name
	}
	mxIP := ""
	if t.ip.IsValid() {
		mxIP = t.ip.String()
	}

	e.mu.Lock()
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
			Class: string(o.Verdict.Class), TLS: tls, Size: m.Size,
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
	e.mu.Unlock()

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
	e.mu.Lock()
	done := q.deps.Spool.UpdateAsync(m)
	e.mu.Unlock()
	q.durable <- pendingUpdate{id: m.ID, done: done}

	for i := range recs {
		q.deps.Log.Write(&recs[i])
		q.count(s, recs[i].Type, now)
	}
	if reportFlow {
		q.report(s, outs, t, p, now)
	}

	if len(keep) > 0 {
		j.rcpts = keep
		j.due = due
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
	id   spool.ID
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
			q.deps.Logger.Error("spool update failed", "id", p.id.String(), "err", err)
		}
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
		if o.siteError() {
			if bad == nil {
				bad = o
			}
		} else {
			ok = true
		}
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
		if o.Delivered {
			continue
		}
		s.remember(Reply{Time: now, Code: o.Code, Enhanced: o.Enhanced, Text: o.Text, MXHost: t.host, MXIP: ipString(t), Local: o.Local})
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
		s.stats.hour.add(now)
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
