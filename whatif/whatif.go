// Package whatif replays a recorded period of the delivery log against
// proposed limits and compares, per site, the time to deliver and the
// number of deferrals under the current limits and under the proposed ones.
//
// # Algorithm
//
// Record. The log of the period (advisor.Scan) gives, per site, the
// messages sent there: arrival (the message's Reception record, else its
// first attempt at the site), and whether the site finally took it, bounced
// it or still held it back. Per clock hour it gives the deliveries and the
// hours the receiver pushed back: a TransientFailure of reason "refused"
// or a flow-control change into backoff or suspended. QuotaWait samples on
// connections say the connection quota was what bound the site.
//
// Model of the receiver, from that record only:
//   - Tolerance: if the receiver pushed back in some hours, it accepts at
//     most C messages in any sliding hour, C the median of the deliveries
//     of those hours (what it let through while pushing back); beyond C it
//     answers 451 with the recorded refusal's text. If it never pushed
//     back, nothing in the record bounds it: the model accepts any rate,
//     so a raise is judged at its best case.
//   - Speed: a transaction holds its connection for S. When QuotaWait
//     samples show mail waiting on all connections, S = max_connections ×
//     1 h ÷ the peak deliveries per hour of those hours (throughput grows
//     with connections, as the advisor assumes); otherwise S = 2 s (the
//     receiver was never the bottleneck).
//   - Bounces: a message the record shows bounced is refused with 550 again.
//
// Replay. Each side (current, proposed) is a discrete-event run in virtual
// time: a min-heap of messages by the time they are ready (arrival, or the
// retry after a deferral, following [delivery] retry), max_connections
// slots each busy until a virtual time, and messages_per_hour paced by
// package quota's GCRA on the virtual clock. The next message starts at the
// latest of its ready time, a free slot and its quota token. Every attempt is
// a real SMTP transaction over loopback to a package sim provider whose
// RCPT reply applies the model at the attempt's virtual time; the sim
// provider counts what it accepted. Nothing sleeps: an hour of replay costs
// the transactions in it.
//
// Bounds: at most MaxMessages messages per site (the first attempted; the
// model still learns from all), MaxAttempts attempts per side, a virtual horizon after the period, and
// ctx's deadline on the wall clock. A side stopped by a bound says so and
// counts the rest as undelivered.
//
// Not modelled (so the output says it): flow control's backoff (it would
// slow both sides alike), several sources or MX IPs (each site is one
// quota key), other sites sharing a rule-scoped quota, deferrals for
// other reasons than "refused" (greylisting, failed connections: the
// RECORDED column has them, the replays do not), and any receiver
// behaviour the record did not show.
package whatif

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/penstock-mta/penstock/advisor"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/quota"
	"github.com/penstock-mta/penstock/sim"
	"github.com/penstock-mta/penstock/smtpclient"
)

// Defaults of Options.
const (
	DefaultMaxMessages = 5000
	DefaultMaxAttempts = 50000
	DefaultHorizon     = 7 * 24 * time.Hour
	// DefaultService is a transaction's time when the receiver was never
	// the bottleneck.
	DefaultService = 2 * time.Second
	maxReceptions  = 1_000_000 // arrival times kept while reading
	maxDropped     = 100_000   // messages left out counted per site
)

// Limits are the limits of one rule the replay varies.
type Limits struct {
	MaxConnections  int `json:"max_connections"`
	MessagesPerHour int `json:"messages_per_hour"` // 0: unlimited
}

// Options select what to replay and bound it.
type Options struct {
	Since, Until time.Time
	Rule         string          // only sites under this rule ("" all)
	Site         string          // only this site ("" all)
	Retry        []time.Duration // waits after a deferral; the last repeats
	MaxMessages  int             // per site
	MaxAttempts  int             // per side of a site
	Horizon      time.Duration   // virtual time allowed after the period's end
}

// Side is one replay of a site, or (Recorded) what the log shows.
type Side struct {
	Limits      Limits        `json:"limits"`
	Delivered   int           `json:"delivered"`
	Bounced     int           `json:"bounced"`
	Undelivered int           `json:"undelivered"`
	Deferrals   int           `json:"deferrals"`
	Attempts    int           `json:"attempts"`
	MeanWait    time.Duration `json:"mean_wait_ns"` // arrival to delivery, over delivered messages
	MaxWait     time.Duration `json:"max_wait_ns"`
	Finish      time.Duration `json:"finish_ns"` // first arrival to last delivery
	Accepted    int64         `json:"sim_accepted,omitempty"`
	Stopped     string        `json:"stopped,omitempty"` // the bound that ended the run early
}

// Model is what the replay assumes of a site's receiver.
type Model struct {
	// PerHour is the tolerance C: at most this many accepted in any
	// sliding hour; 0: no bound seen in the record.
	PerHour       int           `json:"per_hour"`
	ThrottleHours int           `json:"throttle_hours"`
	Service       time.Duration `json:"service_ns"`
	ConnBound     bool          `json:"conn_bound"` // Service came from QuotaWait samples
	Reply         string        `json:"reply"`      // the throttle reply
	FromReception int           `json:"from_reception"`
}

// SiteResult compares the sides for one site.
type SiteResult struct {
	Site      string `json:"site"`
	Rule      string `json:"rule"`
	Messages  int    `json:"messages"`
	Truncated int    `json:"truncated,omitempty"` // later messages left out (MaxMessages; counted up to 100,000)
	Model     Model  `json:"model"`
	Recorded  Side   `json:"recorded"`
	Current   Side   `json:"current"`
	Proposed  Side   `json:"proposed"`
}

// Result is the replay of a period.
type Result struct {
	Since time.Time    `json:"since"`
	Until time.Time    `json:"until"`
	Sites []SiteResult `json:"sites"`
}

// Assumptions returns the model's assumptions, for the output.
func Assumptions() []string {
	return []string{
		"arrivals are the Reception records (else each message's first attempt); one message is one transaction",
		"a receiver that pushed back accepts at most the median deliveries of its pushed-back hours in any sliding hour, then answers 451; one that never pushed back is assumed to take any rate (the best case for a raise)",
		"a transaction holds a connection 2 s, unless QuotaWait samples show mail waiting on all connections: then connections × 1 h ÷ the peak hourly deliveries of those hours",
		"not modelled: flow-control backoff, deferrals other than \"refused\" (greylisting, failed connections), several sources or MX IPs, other sites sharing a rule-scoped quota, daily quotas",
	}
}

// ErrNoMail is returned (wrapped) when the period holds no attempt for the
// selected sites.
var ErrNoMail = errors.New("no mail to replay")

type msg struct {
	id                 string
	arrival, delivered time.Time
	lastAt             time.Time // the last attempt's time
	bounced, done      bool
}

type site struct {
	name, rule string
	msgs       map[string]*msg
	delivered  map[int64]int // per clock hour
	throttled  map[int64]bool
	connWait   map[int64]bool
	deferrals  int
	attempts   int
	reply      string
	dropped    map[string]bool // messages beyond MaxMessages (up to maxDropped)
	// The last delivery's message and time: one transaction's recipients
	// count once.
	lastDelivID string
	lastDelivAt time.Time
}

// Run reads dir's log for the period and replays each selected site under
// current and proposed limits (by rule name; a rule missing from proposed
// keeps its current limits).
func Run(ctx context.Context, dir string, current, proposed map[string]Limits, opts Options) (*Result, error) {
	if opts.MaxMessages <= 0 {
		opts.MaxMessages = DefaultMaxMessages
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.Horizon <= 0 {
		opts.Horizon = DefaultHorizon
	}
	if len(opts.Retry) == 0 {
		opts.Retry = []time.Duration{5 * time.Minute}
	}
	sites, recv, err := record(ctx, dir, opts)
	if err != nil {
		return nil, err
	}
	res := &Result{Since: opts.Since, Until: opts.Until}
	names := make([]string, 0, len(sites))
	for n, s := range sites {
		if len(s.msgs) > 0 {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		what := "any site"
		if opts.Site != "" {
			what = "site " + opts.Site
		} else if opts.Rule != "" {
			what = "the sites of rule " + opts.Rule
		}
		return nil, fmt.Errorf("what-if: %w: the delivery log has no attempt at %s in the period", ErrNoMail, what)
	}
	sort.Strings(names)
	for _, n := range names {
		s := sites[n]
		cur, ok := current[s.rule]
		if !ok {
			return nil, fmt.Errorf("what-if: site %s was sent under rule %q, which the configuration no longer has", n, s.rule)
		}
		prop, ok := proposed[s.rule]
		if !ok {
			prop = cur
		}
		sr := s.result(recv, cur, opts)
		if sr.Current, err = replay(ctx, s, sr, cur, opts); err != nil {
			return nil, err
		}
		if sr.Proposed, err = replay(ctx, s, sr, prop, opts); err != nil {
			return nil, err
		}
		sr.Recorded.Limits = cur
		res.Sites = append(res.Sites, sr)
	}
	return res, nil
}

// record reads the period's log into per-site histories and arrival times.
func record(ctx context.Context, dir string, opts Options) (map[string]*site, map[string]time.Time, error) {
	sites := map[string]*site{}
	recv := map[string]time.Time{}
	get := func(name string) *site {
		s := sites[name]
		if s == nil {
			s = &site{name: name, msgs: map[string]*msg{}, delivered: map[int64]int{}, throttled: map[int64]bool{},
				connWait: map[int64]bool{}, dropped: map[string]bool{}}
			sites[name] = s
		}
		return s
	}
	_, err := advisor.Scan(ctx, dir, opts.Since, opts.Until, func(r *events.Record) {
		if r.Type == events.Reception {
			if r.ID != "" && len(recv) < maxReceptions {
				if _, ok := recv[r.ID]; !ok {
					recv[r.ID] = r.Time
				}
			}
			return
		}
		if r.Site == "" || opts.Site != "" && r.Site != opts.Site {
			return
		}
		h := r.Time.Unix() / 3600
		switch r.Type {
		case events.FlowControl:
			if r.State == "backoff" || r.State == "suspended" {
				get(r.Site).throttled[h] = true
			}
			return
		case events.QuotaWait:
			if r.Reason == advisor.WaitConnections && (opts.Rule == "" || r.Rule == opts.Rule) {
				get(r.Site).connWait[h] = true
			}
			return
		case events.Delivery, events.TransientFailure, events.Bounce:
		default:
			return
		}
		if opts.Rule != "" && r.Rule != opts.Rule {
			return
		}
		s := get(r.Site)
		if r.Rule != "" {
			s.rule = r.Rule
		}
		id := r.ID
		if id == "" {
			id = fmt.Sprintf("anon-%d", len(s.msgs)+len(s.dropped))
		}
		// The model learns from every record of the period; the recipients
		// of one transaction are consecutive records of one id and time.
		switch r.Type {
		case events.Delivery:
			if id != s.lastDelivID || !r.Time.Equal(s.lastDelivAt) {
				s.delivered[h]++
				s.lastDelivID, s.lastDelivAt = id, r.Time
			}
		case events.TransientFailure:
			if r.Reason == "refused" {
				s.throttled[h] = true
				if r.Text != "" {
					s.reply = r.Text
				}
			}
		}
		// The replay and the recorded column take the first MaxMessages
		// messages.
		m := s.msgs[id]
		if m == nil {
			if len(s.msgs) >= opts.MaxMessages {
				if len(s.dropped) < maxDropped {
					s.dropped[id] = true
				}
				return
			}
			m = &msg{id: id, arrival: r.Time}
			s.msgs[id] = m
		}
		if !r.Time.Equal(m.lastAt) {
			s.attempts++
			m.lastAt = r.Time
		}
		switch r.Type {
		case events.Delivery:
			if m.delivered.IsZero() {
				m.delivered, m.done = r.Time, true
			}
		case events.Bounce:
			if !m.done {
				m.bounced, m.done = true, true
			}
		case events.TransientFailure:
			s.deferrals++
		}
	})
	if err != nil {
		return nil, nil, fmt.Errorf("what-if: %w", err)
	}
	return sites, recv, nil
}

// result fits the model and fills the recorded side.
func (s *site) result(recv map[string]time.Time, cur Limits, opts Options) SiteResult {
	sr := SiteResult{Site: s.name, Rule: s.rule}
	var rates []int
	for h := range s.throttled {
		if n := s.delivered[h]; n > 0 {
			rates = append(rates, n)
		}
	}
	slices.Sort(rates)
	if len(rates) > 0 {
		sr.Model.PerHour = rates[len(rates)/2]
	}
	sr.Model.ThrottleHours = len(s.throttled)
	sr.Model.Service = DefaultService
	// Mail waited on every connection: a connection carried peak ÷
	// connections messages an hour.
	peak := 0
	for h := range s.connWait {
		peak = max(peak, s.delivered[h])
	}
	if peak > 0 && cur.MaxConnections > 0 {
		sr.Model.Service = time.Hour * time.Duration(cur.MaxConnections) / time.Duration(peak)
		sr.Model.ConnBound = true
	}
	sr.Model.Reply = "451 4.7.0 "
	if s.reply != "" {
		sr.Model.Reply += strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(s.reply, "4.7.0"), "4.7.1"))
	} else {
		sr.Model.Reply += "over the rate the recorded history shows this site tolerated"
	}
	for _, m := range s.msgs {
		if t, ok := recv[m.id]; ok && !t.After(m.arrival) {
			m.arrival = t
			sr.Model.FromReception++
		}
	}
	// The recorded side.
	rs := &sr.Recorded
	rs.Deferrals, rs.Attempts = s.deferrals, s.attempts
	var first, last time.Time
	var sum time.Duration
	for _, m := range s.msgs {
		if first.IsZero() || m.arrival.Before(first) {
			first = m.arrival
		}
		switch {
		case !m.delivered.IsZero():
			rs.Delivered++
			w := m.delivered.Sub(m.arrival)
			sum += w
			rs.MaxWait = max(rs.MaxWait, w)
			if m.delivered.After(last) {
				last = m.delivered
			}
		case m.bounced:
			rs.Bounced++
		default:
			rs.Undelivered++
		}
	}
	if rs.Delivered > 0 {
		rs.MeanWait = sum / time.Duration(rs.Delivered)
		rs.Finish = last.Sub(first)
	}
	sr.Messages, sr.Truncated = len(s.msgs), len(s.dropped)
	return sr
}

// clock is the replay's virtual time, read by the quota limiter and by
// the simulated receiver (from its connection goroutines).
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// receiver applies the model to each RCPT at the virtual time.
type receiver struct {
	clk      *clock
	model    Model
	bounce   map[string]bool // recipient -> the record shows a bounce
	mu       sync.Mutex
	accepted []time.Time // virtual times of acceptances in the last hour
}

func (r *receiver) rcpt(addr string) string {
	if r.bounce[addr] {
		return "550 5.1.1 the recorded history shows this recipient bounced"
	}
	now := r.clk.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	cut := now.Add(-time.Hour)
	i := 0
	for i < len(r.accepted) && !r.accepted[i].After(cut) {
		i++
	}
	r.accepted = r.accepted[i:]
	if r.model.PerHour > 0 && len(r.accepted) >= r.model.PerHour {
		return r.model.Reply
	}
	r.accepted = append(r.accepted, now)
	return ""
}

type job struct {
	n       int
	arrival time.Time
	ready   time.Time
	tries   int
}

type jobHeap []*job

func (h jobHeap) Len() int { return len(h) }
func (h jobHeap) Less(i, j int) bool {
	if c := h[i].ready.Compare(h[j].ready); c != 0 {
		return c < 0
	}
	return h[i].n < h[j].n
}
func (h jobHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *jobHeap) Push(x any)   { *h = append(*h, x.(*job)) }
func (h *jobHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// replay runs one side for one site.
func replay(ctx context.Context, s *site, sr SiteResult, lim Limits, opts Options) (Side, error) {
	msgs := make([]*msg, 0, len(s.msgs))
	for _, m := range s.msgs {
		msgs = append(msgs, m)
	}
	slices.SortFunc(msgs, func(a, b *msg) int {
		if c := a.arrival.Compare(b.arrival); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	side := Side{Limits: lim}
	if len(msgs) == 0 {
		return side, nil
	}
	clk := &clock{t: msgs[0].arrival}
	rc := &receiver{clk: clk, model: sr.Model, bounce: map[string]bool{}}
	h := make(jobHeap, 0, len(msgs))
	for i, m := range msgs {
		if m.bounced {
			rc.bounce[rcptOf(i)] = true
		}
		h = append(h, &job{n: i, arrival: m.arrival, ready: m.arrival})
	}
	heap.Init(&h)

	prov, err := sim.NewProvider(sim.Behavior{Name: "replay.test", RcptReply: rc.rcpt}, "127.0.0.1:0")
	if err != nil {
		return side, fmt.Errorf("what-if: %w", err)
	}
	defer prov.Close()
	var cl *smtpclient.Client
	defer func() {
		if cl != nil {
			cl.Close()
		}
	}()

	q := quota.NewLocal(clk)
	conns := max(1, lim.MaxConnections)
	slots := make([]time.Time, conns) // each connection busy until
	for i := range slots {
		slots[i] = clk.t
	}
	horizon := opts.Until.Add(opts.Horizon)
	first := msgs[0].arrival
	var last time.Time
	var sum time.Duration
	t := clk.t
	for h.Len() > 0 {
		if err := ctx.Err(); err != nil {
			side.Stopped = "the time allowed for the replay ran out"
			break
		}
		if side.Attempts >= opts.MaxAttempts {
			side.Stopped = fmt.Sprintf("%d attempts", opts.MaxAttempts)
			break
		}
		j := h[0]
		slot := 0
		for i := range slots {
			if slots[i].Before(slots[slot]) {
				slot = i
			}
		}
		t = latest(t, j.ready, slots[slot])
		if t.After(horizon) {
			side.Stopped = fmt.Sprintf("the horizon (%s after the period)", opts.Horizon)
			break
		}
		clk.set(t)
		if lim.MessagesPerHour > 0 {
			ok, wait, err := q.TakeMessage(ctx, "replay", lim.MessagesPerHour)
			if err != nil {
				return side, fmt.Errorf("what-if: %w", err)
			}
			if !ok {
				t = t.Add(max(wait, time.Millisecond))
				continue
			}
		}
		heap.Pop(&h)
		side.Attempts++
		done := t.Add(sr.Model.Service)
		slots[slot] = done
		code, err := send(ctx, &cl, prov.Addrs()[0], rcptOf(j.n))
		if err != nil {
			if ctx.Err() != nil {
				heap.Push(&h, j)
				side.Stopped = "the time allowed for the replay ran out"
				break
			}
			return side, err
		}
		switch {
		case code/100 == 2:
			side.Delivered++
			w := done.Sub(j.arrival)
			sum += w
			side.MaxWait = max(side.MaxWait, w)
			last = latest(last, done)
		case code/100 == 5:
			side.Bounced++
		default:
			side.Deferrals++
			j.tries++
			j.ready = done.Add(opts.Retry[min(j.tries, len(opts.Retry))-1])
			heap.Push(&h, j)
		}
	}
	side.Undelivered = h.Len()
	if side.Delivered > 0 {
		side.MeanWait = sum / time.Duration(side.Delivered)
		side.Finish = last.Sub(first)
	}
	side.Accepted = prov.Stats().Delivered
	return side, nil
}

func latest(ts ...time.Time) time.Time {
	var out time.Time
	for _, t := range ts {
		if t.After(out) {
			out = t
		}
	}
	return out
}

func rcptOf(n int) string { return fmt.Sprintf("m%d@replay.test", n) }

const body = "From: replay@penstock.test\r\nSubject: what-if replay\r\n\r\nreplayed\r\n"

// send runs one real SMTP transaction, dialling again after a broken
// connection, and returns the reply code for the recipient.
func send(ctx context.Context, cl **smtpclient.Client, addr, rcpt string) (int, error) {
	for try := 0; try < 2; try++ {
		if *cl == nil || (*cl).Broken() {
			if *cl != nil {
				(*cl).Close()
			}
			c, err := smtpclient.Dial(ctx, addr, smtpclient.Options{EHLO: "replay.penstock.test", TLS: smtpclient.TLSDisabled})
			if err != nil {
				return 0, fmt.Errorf("what-if: the simulated receiver: %w", err)
			}
			*cl = c
		}
		res, err := (*cl).Send(ctx, "replay@penstock.test", []string{rcpt}, []byte(body))
		if rerr := res.Rcpts[0].Err; rerr != nil && rerr.Reply.Code > 0 {
			return rerr.Reply.Code, nil
		}
		if err == nil {
			return 250, nil
		}
		var se *smtpclient.Error
		if errors.As(err, &se) && se.Reply.Code > 0 {
			return se.Reply.Code, nil
		}
		if ctx.Err() != nil {
			return 0, fmt.Errorf("what-if: %w", ctx.Err())
		}
	}
	return 0, errors.New("what-if: the simulated receiver broke the connection twice")
}
