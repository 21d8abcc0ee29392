// Package advisor answers "are my thresholds right?" from Penstock's own
// delivery log: for a period, it tallies per MX rule and per site the
// deliveries, deferrals by reason, flow-control episodes and their reasons,
// the time spent in backoff and suspension, and the throughput reached per
// hour, and turns them into recommendations, each with evidence, the
// [[mx_rule]] change as a diff and its expected effect.
//
// # Algorithm
//
// Analyze streams the log files of a directory (delivery-YYYYMMDD*.log in
// name order, then delivery.log) line by line, skipping archives whose day
// lies wholly before the period and records outside it; memory grows with
// sites × hours, never with records. Every Delivery, TransientFailure and
// Bounce record is an attempt that took one message from the rule's hourly
// quota, counted per quota key as package quota keys it (scope source: rule,
// site and source IP; path: rule, source IP and MX IP; rule: the rule), once
// per transaction (consecutive records of one message id at one time are one
// message). FlowControl records give the flow state of a site over time:
// the time between a change into backoff or suspended and the next change
// is time held back.
//
// Mail waiting on our own limits is seen two ways. For the connection
// quota, a node logs QuotaWait records (WaitRecords, every SampleEvery):
// one per site whose queued mail waits on its rule's connection or hourly
// quota at that moment; the delivery log had no such record before. For the
// hourly quota, waiting is also inferred from the deliveries, so that logs
// written before QuotaWait existed still count: a quota key at ≥ 90% of
// messages_per_hour in two or more consecutive clock hours. The limiter
// paces sends, so a queue that empties shows up as an hour below the cap; a
// run of hours at the cap means the queue still held mail for the key when
// each hour ended. A run counts only if the key's sites had no
// TransientFailure and no flow-control change in it (mail waited on our
// limit, not on the receiver).
//
// The recommendations:
//   - raise messages_per_hour: a run of ≥ 2 h at the cap with no deferral.
//     Proposed: × 1.5. Effect: the run's volume V divided by the new rate,
//     against the run's length.
//   - raise max_connections: QuotaWait samples on connections in ≥ 2
//     consecutive hours with no deferral or flow-control hold. Proposed:
//     × 1.5. Effect: the run's length × old ÷ new connections, assuming
//     throughput grows with connections (the receiver answering each as
//     fast as before).
//   - lower: throttling recurred at a site (flow control held it back, or
//     "refused" deferrals came, in ≥ 2 distinct hours) while the busiest
//     quota key sent at least 10 an hour (below that, throttling is not about
//     the rate). Proposed: 80% of the median per-key rate of those hours (or
//     of the current limit, if that is lower); an hour's rate is its own,
//     or that of the 60 minutes before its first push-back if busier (a
//     backoff on the hour holds the hour it starts nearly idle). Effect: the site's period
//     volume at the new steady rate against the time it spent held back.
//   - unused: an operator's rule that no record names in the period;
//     shadowed when a host made from each of its patterns matches an
//     earlier rule first.
//   - overridden: an operator's rule that replaces a shipped one (the diff
//     shows the shipped values against the operator's).
//   - unreached: a messages_per_hour that no key reached half of.
//
// The package reads the log and the rules, and makes the QuotaWait records
// the node writes. It never writes the log, the configuration, the spool or
// the queue: applying a recommendation is the operator's decision.
package advisor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/mxrule"
)

// Thresholds of the recommendations (see the package comment).
const (
	capFraction    = 0.9 // an hour at ≥ 90% of the cap is an hour at the cap
	minCapRun      = 2   // consecutive hours at the cap to recommend raising
	raiseFactor    = 1.5
	minThrottled   = 2 // distinct hours with throttling to recommend lowering
	lowerFactor    = 0.8
	unreachedShare = 0.5
	minLowerRate   = 10      // below this hourly rate, throttling is not about the rate
	maxLine        = 1 << 20 // longer log lines are skipped, not fatal
)

// ErrUnknownRule is returned (wrapped) when Options.Rule names no rule in force.
var ErrUnknownRule = errors.New("no such rule")

// Options select the period and the rule.
type Options struct {
	Since, Until time.Time // the period; zero Until means now
	Rule         string    // only this rule; "" for all
}

// Report is the advisor's answer.
type Report struct {
	Since           time.Time        `json:"since"`
	Until           time.Time        `json:"until"`
	Files           int              `json:"files"`
	Records         int              `json:"records"`   // records in the period
	BadLines        int              `json:"bad_lines"` // lines that were not records
	Rules           []RuleReport     `json:"rules"`     // in match order
	Recommendations []Recommendation `json:"recommendations"`
}

// RuleReport is what one rule's sites saw.
type RuleReport struct {
	Name            string         `json:"name"`
	Builtin         bool           `json:"builtin"`
	ReplacesShipped bool           `json:"replaces_shipped,omitempty"`
	Scope           string         `json:"scope"`
	MaxConnections  int            `json:"max_connections"`
	MessagesPerHour int            `json:"messages_per_hour"`
	Deliveries      int            `json:"deliveries"`
	Bounces         int            `json:"bounces"`
	Deferrals       map[string]int `json:"deferrals,omitempty"` // by reason
	PeakPerHour     int            `json:"peak_per_hour"`       // most attempts in one hour by one quota key
	Sites           []SiteReport   `json:"sites,omitempty"`
}

// SiteReport is what one site saw.
type SiteReport struct {
	Site           string         `json:"site"`
	Deliveries     int            `json:"deliveries"`
	Bounces        int            `json:"bounces"`
	Deferrals      map[string]int `json:"deferrals,omitempty"` // by reason
	Throttles      map[string]int `json:"throttles,omitempty"` // flow-control changes into backoff/suspended, by reason
	BackoffSeconds int64          `json:"backoff_seconds"`
	SuspendSeconds int64          `json:"suspended_seconds"`
	PeakPerHour    int            `json:"peak_per_hour"` // most deliveries in one clock hour
	ActiveHours    int            `json:"active_hours"`  // clock hours with a delivery
	// Clock hours with a QuotaWait sample: mail waited on the rule's
	// connection quota, or on its hourly quota.
	ConnWaitHours   int `json:"conn_wait_hours"`
	HourlyWaitHours int `json:"hourly_wait_hours"`
}

// Recommendation kinds.
const (
	Raise      = "raise"
	Lower      = "lower"
	Unused     = "unused"
	Overridden = "overridden"
	Unreached  = "unreached"
)

// Recommendation is one piece of advice.
type Recommendation struct {
	Kind     string `json:"kind"`
	Rule     string `json:"rule"`
	Site     string `json:"site,omitempty"`
	Key      string `json:"key,omitempty"` // the [[mx_rule]] key to change
	From     int    `json:"from,omitempty"`
	To       int    `json:"to,omitempty"`
	Evidence string `json:"evidence"`
	Effect   string `json:"effect,omitempty"`
	Diff     string `json:"diff,omitempty"` // [[mx_rule]] lines, before (-) and after (+)
}

type siteAcc struct {
	rule       string
	rep        SiteReport
	perHour    map[int64]int // deliveries per clock hour
	deferHours map[int64]bool
	throttled  map[int64]bool      // hours with a flow-control hold or a "refused" deferral
	throttleAt map[int64]time.Time // the first such event of each of those hours
	connWait   map[int64]bool      // hours with a QuotaWait sample on connections
	hourWait   map[int64]bool      // hours with a QuotaWait sample on the hourly quota
	keys       map[string]bool
	state      string
	since      time.Time
	flowSeen   bool
	volume     int // attempts
}

type keyAcc struct {
	rule    string
	site    string // last site seen under the key
	perHour map[int64]int
	lastID  string
	lastAt  time.Time
}

type acc struct {
	set   *mxrule.Set
	opts  Options
	sites map[string]*siteAcc
	keys  map[string]*keyAcc
	rules map[string]*mxrule.Rule
}

// Analyze reads the delivery log in dir for the period and advises on rules.
// It stops with ctx's error when ctx ends.
func Analyze(ctx context.Context, rules *mxrule.Set, dir string, opts Options) (*Report, error) {
	if opts.Until.IsZero() {
		opts.Until = time.Now()
	}
	if !opts.Since.Before(opts.Until) {
		return nil, fmt.Errorf("advise: the period is empty (since %s, until %s)",
			opts.Since.Format(time.RFC3339), opts.Until.Format(time.RFC3339))
	}
	all := rules.Rules()
	a := &acc{set: rules, opts: opts, sites: map[string]*siteAcc{}, keys: map[string]*keyAcc{}, rules: map[string]*mxrule.Rule{}}
	for _, r := range all {
		a.rules[r.Name] = r
	}
	if opts.Rule != "" && a.rules[opts.Rule] == nil {
		return nil, fmt.Errorf("advise: %w named %q in the configuration", ErrUnknownRule, opts.Rule)
	}
	rep := &Report{Since: opts.Since, Until: opts.Until}
	st, err := Scan(ctx, dir, opts.Since, opts.Until, a.add)
	if err != nil {
		return nil, err
	}
	rep.Files, rep.Records, rep.BadLines = st.Files, st.Records, st.BadLines
	a.finish(all, rep)
	return rep, nil
}

// ScanStats count what Scan read.
type ScanStats struct {
	Files, Records, BadLines int
}

// Scan calls fn, in the order written, for each record of the delivery log
// in dir whose time lies in [since, until). Lines that are not records are
// counted and skipped. fn must not keep r. It stops with ctx's error when
// ctx ends. The what-if replay reads the log through it too.
func Scan(ctx context.Context, dir string, since, until time.Time, fn func(r *events.Record)) (ScanStats, error) {
	files, err := logFiles(dir, since)
	if err != nil {
		return ScanStats{}, err
	}
	st := ScanStats{Files: len(files)}
	for _, f := range files {
		if err := readFile(ctx, f, since, until, fn, &st); err != nil {
			return st, err
		}
	}
	return st, nil
}

// logFiles lists dir's log files in time order, skipping archives of days
// that end before since.
func logFiles(dir string, since time.Time) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("advise: log directory %s does not exist (see [server] log_dir)", dir)
		}
		return nil, fmt.Errorf("advise: %w", err)
	}
	var out []string
	current := false
	for _, e := range ents {
		n := e.Name()
		if n == "delivery.log" {
			current = true
			continue
		}
		if !strings.HasPrefix(n, "delivery-") || !strings.HasSuffix(n, ".log") || len(n) < len("delivery-20060102.log") {
			continue
		}
		day, err := time.ParseInLocation("20060102", n[len("delivery-"):len("delivery-20060102")], since.Location())
		// A day-old margin: the file's midnight was the writer's clock's.
		if err == nil && day.AddDate(0, 0, 2).Before(since) {
			continue
		}
		out = append(out, filepath.Join(dir, n))
	}
	// By name is by day; within a day, the plain name came first, then .1,
	// .2, ... (the events writer adds a number when the name is taken).
	sort.Slice(out, func(i, j int) bool {
		di, ni := archiveOrder(out[i])
		dj, nj := archiveOrder(out[j])
		if di != dj {
			return di < dj
		}
		return ni < nj
	})
	if current {
		out = append(out, filepath.Join(dir, "delivery.log"))
	}
	return out, nil
}

// archiveOrder splits delivery-YYYYMMDD[.N].log into its day and N (0 for
// the plain name).
func archiveOrder(path string) (day string, n int) {
	name := strings.TrimSuffix(filepath.Base(path), ".log")
	day, num, _ := strings.Cut(strings.TrimPrefix(name, "delivery-"), ".")
	n, _ = strconv.Atoi(num)
	return day, n
}

func readFile(ctx context.Context, name string, since, until time.Time, fn func(*events.Record), st *ScanStats) error {
	f, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("advise: %w", err)
	}
	defer f.Close()
	rd := bufio.NewReaderSize(f, 64<<10)
	for n := 1; ; n++ {
		if n%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		line, err := readLine(rd)
		if len(line) > 0 {
			var r events.Record
			if json.Unmarshal(line, &r) != nil || r.Type == "" {
				st.BadLines++
			} else if !r.Time.Before(since) && r.Time.Before(until) {
				st.Records++
				fn(&r)
			}
		}
		if err != nil {
			if errors.Is(err, errTooLong) {
				st.BadLines++
				continue
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("advise: read %s: %w", name, err)
		}
	}
}

var errTooLong = errors.New("line too long")

// readLine returns the next line without its newline; a line longer than
// maxLine is consumed and reported as errTooLong.
func readLine(rd *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := rd.ReadSlice('\n')
		if len(line)+len(chunk) > maxLine {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = rd.ReadSlice('\n')
			}
			if err != nil && !errors.Is(err, bufio.ErrBufferFull) && err.Error() != "EOF" {
				return nil, err
			}
			return nil, errTooLong
		}
		line = append(line, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return trimNL(line), err
	}
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func (a *acc) site(name string) *siteAcc {
	s := a.sites[name]
	if s == nil {
		s = &siteAcc{rep: SiteReport{Site: name}, perHour: map[int64]int{}, deferHours: map[int64]bool{},
			connWait: map[int64]bool{}, hourWait: map[int64]bool{},
			throttled: map[int64]bool{}, throttleAt: map[int64]time.Time{}, keys: map[string]bool{}, state: "normal", since: a.opts.Since}
		a.sites[name] = s
	}
	return s
}

func hourOf(t time.Time) int64 { return t.Unix() / 3600 }

func (a *acc) add(r *events.Record) {
	if r.Site == "" {
		return
	}
	switch r.Type {
	case events.Delivery, events.TransientFailure, events.Bounce:
	case events.FlowControl:
		a.flow(r)
		return
	case events.QuotaWait:
		s := a.site(r.Site)
		if r.Rule != "" {
			s.rule = r.Rule
		}
		switch r.Reason {
		case WaitConnections:
			s.connWait[hourOf(r.Time)] = true
		case WaitHourly:
			s.hourWait[hourOf(r.Time)] = true
		}
		return
	default:
		return
	}
	s := a.site(r.Site)
	if r.Rule != "" {
		s.rule = r.Rule
	}
	h := hourOf(r.Time)
	switch r.Type {
	case events.Delivery:
		s.rep.Deliveries++
		s.perHour[h]++
	case events.Bounce:
		s.rep.Bounces++
	case events.TransientFailure:
		reason := r.Reason
		if reason == "" {
			reason = "unknown"
		}
		if s.rep.Deferrals == nil {
			s.rep.Deferrals = map[string]int{}
		}
		s.rep.Deferrals[reason]++
		s.deferHours[h] = true
		if reason == "refused" {
			s.throttle(r.Time)
		}
	}
	rule := a.rules[r.Rule]
	if rule == nil {
		return
	}
	key := quotaKey(rule, r)
	k := a.keys[key]
	if k == nil {
		k = &keyAcc{rule: rule.Name, perHour: map[int64]int{}}
		a.keys[key] = k
	}
	k.site = r.Site
	s.keys[key] = true
	if r.ID != "" && r.ID == k.lastID && r.Time.Equal(k.lastAt) {
		return // another recipient of the same transaction
	}
	k.lastID, k.lastAt = r.ID, r.Time
	k.perHour[h]++
	s.volume++
}

// quotaKey names the quota an attempt counted against, as package quota
// keys it.
func quotaKey(rule *mxrule.Rule, r *events.Record) string {
	switch rule.Scope {
	case mxrule.ScopeRule:
		return rule.Name
	case mxrule.ScopePath:
		return rule.Name + "|" + r.SourceIP + "|" + r.MXIP
	}
	return rule.Name + "|" + r.Site + "|" + r.SourceIP
}

// flow follows a site's flow state. Status is "from -> to".
func (a *acc) flow(r *events.Record) {
	s := a.site(r.Site)
	from, to, ok := strings.Cut(r.Status, " -> ")
	if !ok {
		to = r.State
	}
	if to == "" {
		to = r.State
	}
	if !s.flowSeen && from != "" {
		s.state = from // the state the period began in
	}
	s.flowSeen = true
	s.close(r.Time)
	s.state, s.since = to, r.Time
	if to != "normal" {
		reason := r.Detail
		if reason == "" {
			reason = to
		}
		if s.rep.Throttles == nil {
			s.rep.Throttles = map[string]int{}
		}
		s.rep.Throttles[reason]++
		s.throttle(r.Time)
	}
}

// throttle marks the hour of at as throttled, remembering its first event.
func (s *siteAcc) throttle(at time.Time) {
	h := hourOf(at)
	s.throttled[h] = true
	if t, ok := s.throttleAt[h]; !ok || at.Before(t) {
		s.throttleAt[h] = at
	}
}

func (s *siteAcc) close(at time.Time) {
	d := int64(at.Sub(s.since) / time.Second)
	if d < 0 {
		return
	}
	switch s.state {
	case "backoff":
		s.rep.BackoffSeconds += d
	case "suspended":
		s.rep.SuspendSeconds += d
	}
}

func (a *acc) finish(all []*mxrule.Rule, rep *Report) {
	byRule := map[string][]*siteAcc{}
	names := make([]string, 0, len(a.sites))
	for n := range a.sites {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s := a.sites[n]
		s.close(a.opts.Until)
		s.state = "normal"
		for _, c := range s.perHour {
			s.rep.PeakPerHour = max(s.rep.PeakPerHour, c)
		}
		s.rep.ActiveHours = len(s.perHour)
		s.rep.ConnWaitHours, s.rep.HourlyWaitHours = len(s.connWait), len(s.hourWait)
		byRule[s.rule] = append(byRule[s.rule], s)
	}
	shipped := shippedRules()
	for _, r := range all {
		if a.opts.Rule != "" && r.Name != a.opts.Rule {
			continue
		}
		rr := RuleReport{Name: r.Name, Builtin: r.Builtin, ReplacesShipped: r.ReplacesShipped, Scope: r.Scope.String(),
			MaxConnections: r.MaxConnections, MessagesPerHour: r.MessagesPerHour}
		sites := byRule[r.Name]
		for _, s := range sites {
			rr.Deliveries += s.rep.Deliveries
			rr.Bounces += s.rep.Bounces
			for k, v := range s.rep.Deferrals {
				if rr.Deferrals == nil {
					rr.Deferrals = map[string]int{}
				}
				rr.Deferrals[k] += v
			}
			rr.Sites = append(rr.Sites, s.rep)
		}
		for _, k := range a.keys {
			if k.rule == r.Name {
				for _, c := range k.perHour {
					rr.PeakPerHour = max(rr.PeakPerHour, c)
				}
			}
		}
		rep.Rules = append(rep.Rules, rr)

		if !r.Builtin && len(sites) == 0 {
			why := "no site's MX hosts matched it (or an earlier rule won)"
			if by := shadowedBy(a.set, r); len(by) > 0 {
				why = fmt.Sprintf("it can never match: every pattern of it is matched first by the earlier rule %s", strings.Join(by, " or "))
			}
			rep.Recommendations = append(rep.Recommendations, Recommendation{Kind: Unused, Rule: r.Name,
				Evidence: fmt.Sprintf("no delivery-log record in the period names rule %q: %s", r.Name, why),
				Effect:   "removing it changes nothing for the mail of this period",
				Diff:     diffLines(ruleLines(r), nil)})
		}
		if r.ReplacesShipped {
			if sh, ok := shipped[r.Name]; ok {
				rep.Recommendations = append(rep.Recommendations, Recommendation{Kind: Overridden, Rule: r.Name,
					Evidence: fmt.Sprintf("your [[mx_rule]] %q replaces the shipped rule of that name; the diff shows the shipped values (-) against yours (+)", r.Name),
					Diff:     diffLines(ruleLines(sh), ruleLines(r))})
			}
		}
		if rec, ok := a.lower(r, sites); ok {
			// The receiver pushes back: no raise in the same breath.
			rep.Recommendations = append(rep.Recommendations, rec)
			continue
		}
		if rec, ok := raiseConns(r, sites); ok {
			rep.Recommendations = append(rep.Recommendations, rec)
		}
		if rec, ok := a.raise(r); ok {
			rep.Recommendations = append(rep.Recommendations, rec)
		} else if r.MessagesPerHour > 0 && len(sites) > 0 && float64(rr.PeakPerHour) < unreachedShare*float64(r.MessagesPerHour) {
			rep.Recommendations = append(rep.Recommendations, Recommendation{Kind: Unreached, Rule: r.Name,
				Key: "messages_per_hour", From: r.MessagesPerHour,
				Evidence: fmt.Sprintf("the busiest quota key sent at most %d messages in one hour, under half of messages_per_hour = %d", rr.PeakPerHour, r.MessagesPerHour),
				Effect:   "the limit never held mail back in this period; no change needed unless you meant it as a brake"})
		}
	}
}

// raise looks for the longest run of hours at the cap with no deferral.
func (a *acc) raise(r *mxrule.Rule) (Recommendation, bool) {
	if r.MessagesPerHour <= 0 {
		return Recommendation{}, false
	}
	threshold := int(math.Ceil(capFraction * float64(r.MessagesPerHour)))
	var best struct {
		key, site   string
		hours, vol  int
		start, stop int64
	}
	for name, k := range a.keys {
		if k.rule != r.Name {
			continue
		}
		hours := make([]int64, 0, len(k.perHour))
		for h := range k.perHour {
			hours = append(hours, h)
		}
		slices.Sort(hours)
		run, vol := 0, 0
		var start int64
		for i, h := range hours {
			clean := k.perHour[h] >= threshold && !a.keyDeferred(name, h)
			if !clean {
				run, vol = 0, 0
				continue
			}
			if run > 0 && hours[i-1] == h-1 {
				run++
				vol += k.perHour[h]
			} else {
				run, vol, start = 1, k.perHour[h], h
			}
			if run > best.hours || run == best.hours && name < best.key {
				best.key, best.site, best.hours, best.vol, best.start, best.stop = name, k.site, run, vol, start, h
			}
		}
	}
	if best.hours < minCapRun {
		return Recommendation{}, false
	}
	to := int(math.Ceil(raiseFactor * float64(r.MessagesPerHour)))
	newHours := float64(best.vol) / float64(to)
	after := *r
	after.MessagesPerHour = to
	return Recommendation{Kind: Raise, Rule: r.Name, Site: best.site, Key: "messages_per_hour", From: r.MessagesPerHour, To: to,
		Evidence: fmt.Sprintf("quota key %s sent at ≥ %d%% of its %d/h cap for %d consecutive hours (%s to %s) with no deferral and no flow-control change: the queue still held mail when each hour ended",
			best.key, int(capFraction*100), r.MessagesPerHour, best.hours,
			time.Unix(best.start*3600, 0).UTC().Format("2006-01-02 15:00"), time.Unix((best.stop+1)*3600, 0).UTC().Format("15:00 MST")),
		Effect: fmt.Sprintf("that run's %d messages would have finished in ~%s instead of ~%d h (%d messages ÷ %d/h), if the receiver keeps accepting without deferrals",
			best.vol, hoursText(newHours), best.hours, best.vol, to),
		Diff: ruleDiff(r, &after)}, true
}

// raiseConns looks for the longest run of hours in which QuotaWait
// samples saw a site's mail wait on the connection quota with no deferral
// and no flow-control hold.
func raiseConns(r *mxrule.Rule, sites []*siteAcc) (Recommendation, bool) {
	var best *siteAcc
	bestRun, bestVol := 0, 0
	for _, s := range sites {
		hours := make([]int64, 0, len(s.connWait))
		for h := range s.connWait {
			if !s.deferHours[h] && !s.throttled[h] {
				hours = append(hours, h)
			}
		}
		slices.Sort(hours)
		run, vol := 0, 0
		for i, h := range hours {
			if run > 0 && hours[i-1] == h-1 {
				run++
				vol += s.perHour[h]
			} else {
				run, vol = 1, s.perHour[h]
			}
			if run > bestRun || run == bestRun && vol > bestVol {
				best, bestRun, bestVol = s, run, vol
			}
		}
	}
	if best == nil || bestRun < minCapRun || bestVol == 0 {
		return Recommendation{}, false
	}
	to := int(math.Ceil(raiseFactor * float64(r.MaxConnections)))
	after := *r
	after.MaxConnections = to
	newHours := float64(bestRun) * float64(r.MaxConnections) / float64(to)
	return Recommendation{Kind: Raise, Rule: r.Name, Site: best.rep.Site, Key: "max_connections", From: r.MaxConnections, To: to,
		Evidence: fmt.Sprintf("QuotaWait samples saw site %s's mail wait on all %d connections for %d consecutive hours, with no deferral and no flow-control change; it delivered %d messages in them",
			best.rep.Site, r.MaxConnections, bestRun, bestVol),
		Effect: fmt.Sprintf("those %d messages would have finished in ~%s instead of ~%d h (%d h × %d ÷ %d connections), if the receiver answers each connection as fast as before",
			bestVol, hoursText(newHours), bestRun, bestRun, r.MaxConnections, to),
		Diff: ruleDiff(r, &after)}, true
}

// keyDeferred reports whether any site under key had a deferral or a
// flow-control hold in hour h.
func (a *acc) keyDeferred(key string, h int64) bool {
	for _, s := range a.sites {
		if s.keys[key] && (s.deferHours[h] || s.throttled[h]) {
			return true
		}
	}
	return false
}

// lower looks for the site of r with the most throttled hours.
func (a *acc) lower(r *mxrule.Rule, sites []*siteAcc) (Recommendation, bool) {
	var worst *siteAcc
	for _, s := range sites {
		if len(s.throttled) >= minThrottled && (worst == nil || len(s.throttled) > len(worst.throttled)) {
			worst = s
		}
	}
	if worst == nil {
		return Recommendation{}, false
	}
	// The rate at which the receiver pushed back: the busiest key's
	// attempts in each throttled hour, or in the 60 minutes before its
	// first push-back if that was busier (a backoff at 14:02 answers the
	// hour up to 14:02, and little is sent in the hour it holds the site
	// back), median over those hours. The 60 minutes are estimated from
	// the two clock hours they straddle, each taken as evenly spread.
	var rates []int
	for h := range worst.throttled {
		frac := float64(worst.throttleAt[h].Sub(time.Unix(h*3600, 0))) / float64(time.Hour)
		top := 0
		for key := range worst.keys {
			k := a.keys[key]
			before := int(math.Round(float64(k.perHour[h-1])*(1-frac) + float64(k.perHour[h])*frac))
			top = max(top, k.perHour[h], before)
		}
		if top > 0 {
			rates = append(rates, top)
		}
	}
	slices.Sort(rates)
	at := 0
	if len(rates) > 0 {
		at = rates[len(rates)/2]
	}
	if at < minLowerRate {
		return Recommendation{}, false
	}
	base := at
	if r.MessagesPerHour > 0 && (base == 0 || r.MessagesPerHour < base) {
		base = r.MessagesPerHour
	}
	to := max(1, int(lowerFactor*float64(base)))
	after := *r
	after.MessagesPerHour = to
	held := float64(worst.rep.BackoffSeconds+worst.rep.SuspendSeconds) / 3600
	var reasons []string
	for k, v := range worst.rep.Throttles {
		reasons = append(reasons, fmt.Sprintf("%q ×%d", k, v))
	}
	for k, v := range worst.rep.Deferrals {
		if k == "refused" {
			reasons = append(reasons, fmt.Sprintf("%d deferrals %q", v, k))
		}
	}
	sort.Strings(reasons)
	current := "unlimited"
	if r.MessagesPerHour > 0 {
		current = fmt.Sprintf("%d/h", r.MessagesPerHour)
	}
	return Recommendation{Kind: Lower, Rule: r.Name, Site: worst.rep.Site, Key: "messages_per_hour", From: r.MessagesPerHour, To: to,
		Evidence: fmt.Sprintf("site %s was throttled in %d distinct hours at messages_per_hour = %s (%s), at a median of %d messages per hour per quota key; it spent %s held back by flow control",
			worst.rep.Site, len(worst.throttled), current, strings.Join(reasons, ", "), at, hoursText(held)),
		Effect: fmt.Sprintf("the site's %d attempts of this period take ~%s at %d/h, sent steadily, against ~%s spent in backoff or suspension; expect the throttling to stop (%d%% of the rate it pushed back at)",
			worst.volume, hoursText(float64(worst.volume)/float64(to)), to, hoursText(held), int(lowerFactor*100)),
		Diff: ruleDiff(r, &after)}, true
}

// shadowedBy names the earlier rules that take every pattern of r: a host
// made from each pattern (its wildcards filled in) matches an earlier
// rule first. Nil if some pattern's host reaches r.
func shadowedBy(set *mxrule.Set, r *mxrule.Rule) []string {
	var by []string
	// Two fillings, so that an earlier rule that only takes one of them
	// (a narrower pattern) does not count.
	fills := []*strings.Replacer{strings.NewReplacer("*", "x", "?", "x"), strings.NewReplacer("*", "q7-r.s8", "?", "9")}
	for _, p := range r.Patterns {
		for _, f := range fills {
			m := set.Match([]string{f.Replace(p)})
			if m.Rule == r || m.Rule.Name == r.Name {
				return nil
			}
			if q := fmt.Sprintf("%q", m.Rule.Name); !slices.Contains(by, q) {
				by = append(by, q)
			}
		}
	}
	return by
}

func hoursText(h float64) string {
	switch {
	case h < 1:
		return fmt.Sprintf("%d min", int(math.Round(h*60)))
	case h < 10:
		return fmt.Sprintf("%.1f h", h)
	}
	return fmt.Sprintf("%d h", int(math.Round(h)))
}

// shippedRules decodes the shipped provider rules, by name.
func shippedRules() map[string]*mxrule.Rule {
	rs, err := config.DecodeMXRules("mxrule/providers.toml", mxrule.ShippedTOML())
	if err != nil {
		return nil // covered by the config and mxrule tests
	}
	out := map[string]*mxrule.Rule{}
	for _, r := range rs {
		sc, _ := mxrule.ParseScope(r.Scope)
		out[r.Name] = &mxrule.Rule{Name: r.Name, Patterns: r.MX, Scope: sc, MaxConnections: r.MaxConnections,
			MaxMessagesPerConnection: r.MaxMessagesPerConnection, MessagesPerHour: r.MessagesPerHour}
	}
	return out
}

// ruleLines renders the [[mx_rule]] lines the advisor talks about. The
// catch-all cannot be named in a configuration: its stand-in is an operator
// rule with mx = ["*"], placed last.
func ruleLines(r *mxrule.Rule) []string {
	name := r.Name
	if name == mxrule.DefaultName {
		name = "catch-all"
	}
	q := make([]string, len(r.Patterns))
	for i, p := range r.Patterns {
		q[i] = fmt.Sprintf("%q", p)
	}
	return []string{
		"[[mx_rule]]",
		fmt.Sprintf("name = %q", name),
		"mx = [" + strings.Join(q, ", ") + "]",
		fmt.Sprintf("scope = %q", r.Scope.String()),
		fmt.Sprintf("max_connections = %d", r.MaxConnections),
		fmt.Sprintf("max_messages_per_connection = %d", r.MaxMessagesPerConnection),
		fmt.Sprintf("messages_per_hour = %d", r.MessagesPerHour),
	}
}

// ruleDiff is the change from before to after. A built-in rule is changed
// by adding an operator rule of the same name (which replaces a shipped
// one), so all its lines are new.
func ruleDiff(before, after *mxrule.Rule) string {
	if before.Builtin {
		note := "# add to your configuration: it replaces the shipped rule of this name"
		if before.Name == mxrule.DefaultName {
			note = `# add as your last rule: "default" cannot be redefined, a last rule with mx = ["*"] takes its place`
		}
		return diffLines(nil, append([]string{note}, ruleLines(after)...))
	}
	return diffLines(ruleLines(before), ruleLines(after))
}

// diffLines pairs lines by position (the advisor's tables always have the
// same keys in the same order): equal lines are context, others -/+.
func diffLines(before, after []string) string {
	var b strings.Builder
	n := max(len(before), len(after))
	if len(before) > 0 && len(after) > 0 && len(before) != len(after) {
		n = 0 // not aligned: all out, all in
	}
	for i := 0; i < n; i++ {
		switch {
		case i < len(before) && i < len(after) && before[i] == after[i]:
			b.WriteString("  " + before[i] + "\n")
		default:
			if i < len(before) {
				b.WriteString("- " + before[i] + "\n")
			}
			if i < len(after) {
				b.WriteString("+ " + after[i] + "\n")
			}
		}
	}
	if n == 0 {
		for _, l := range before {
			b.WriteString("- " + l + "\n")
		}
		for _, l := range after {
			b.WriteString("+ " + l + "\n")
		}
	}
	return b.String()
}
