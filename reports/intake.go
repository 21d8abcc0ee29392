package reports

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/penstock-mta/penstock/bounce"
	"github.com/penstock-mta/penstock/dsn"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/quarantine"
	"github.com/penstock-mta/penstock/smtpserver"
)

const (
	// MaxActions bounds the recipients one trusted report acts on: a
	// feedback loop reports one complaint a message.
	MaxActions = 100
	// maxSignatures bounds the DKIM signatures verified per report (each
	// costs a DNS lookup).
	maxSignatures = 4
	// dkimTimeout bounds the key lookups of one report.
	dkimTimeout = 10 * time.Second
	// recentMax is how many unverified reports Stats lists.
	recentMax = 20
)

// Quarantine is what reports change.
type Quarantine interface {
	Failure(addr string, f quarantine.Failure) (quarantine.Entry, bool, error)
	Complaint(addr string, f quarantine.Failure) error
}

// Log is the delivery log.
type Log interface {
	Write(r *events.Record)
}

// Classifier qualifies the failure a DSN reports.
type Classifier interface {
	Classify(code int, enhanced, text string) bounce.Verdict
}

// Top counts failure replies for `penstock bounces`.
type Top interface {
	Add(site string, code int, enhanced, normalized string, v bounce.Verdict)
}

// TXTResolver looks up DKIM keys (Penstock's resolver, never the system's).
type TXTResolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// Deps are the parts an Intake acts through.
type Deps struct {
	Quarantine Quarantine
	Log        Log
	Logger     *slog.Logger
	Now        func() time.Time
	Classifier Classifier
	// CountsTowardQuarantine says whether a verdict changes the quarantine
	// (the same predicate as for synchronous failures).
	CountsTowardQuarantine func(bounce.Verdict) bool
	Top                    Top         // optional
	Resolver               TXTResolver // nil: no DKIM trust
	// FreeSpace reports the free bytes of dir's filesystem; nil: the
	// operating system's figure.
	FreeSpace func(dir string) (uint64, error)
}

// Config is the intake's part of [bounce].
type Config struct {
	VERP           *VERP          // the bounce domain and key; nil refuses everything
	TrustedNets    []netip.Prefix // normalised (config.BounceIn.Trusted)
	TrustedDomains []string       // lowercased DKIM signing domains
	MaxReportSize  int64
	PerMinute      int
	Dir            string // where unusable reports are kept
	MaxBytes       int64
	MaxFiles       int
	MinFree        int64
}

// Intake handles the reports of the bounce listener; it is its
// smtpserver.Acceptor. Safe for concurrent use.
type Intake struct {
	cfg   Config
	deps  Deps
	lim   *limiter
	keep  *keeper
	stats stats
	seq   atomic.Uint64 // makes refs unique within one clock reading
}

// New builds an Intake.
func New(cfg Config, deps Deps) *Intake {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.FreeSpace == nil {
		deps.FreeSpace = freeSpace
	}
	if deps.CountsTowardQuarantine == nil {
		deps.CountsTowardQuarantine = func(v bounce.Verdict) bool { return v.Class == bounce.Hard }
	}
	return &Intake{cfg: cfg, deps: deps, lim: newLimiter(max(1, cfg.PerMinute)),
		keep:  &keeper{dir: cfg.Dir, maxBytes: cfg.MaxBytes, maxFiles: cfg.MaxFiles, minFree: cfg.MinFree, free: deps.FreeSpace},
		stats: newStats()}
}

var (
	errNotBounceDomain = &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1},
		Message: "relaying denied: this listener only takes bounces for its bounce domain"}
	// RFC 5321 §4.2.5: a 4yz reply after DATA asks the client to try again.
	errRate = &gosmtp.SMTPError{Code: 450, EnhancedCode: gosmtp.EnhancedCode{4, 7, 1},
		Message: "too many reports from your network, try again later"}
	// RFC 1870 §6.3 / RFC 5321 §4.5.3.1.10.
	errTooBig = &gosmtp.SMTPError{Code: 552, EnhancedCode: gosmtp.EnhancedCode{5, 3, 4},
		Message: "report too big for this listener"}
)

// receivedSlack is room for the Received field the SMTP server prepends to
// a message it already held to MaxReportSize.
const receivedSlack = 4096

// Accept takes one report. It answers 250 to every report it accepted,
// whether or not the report could act, so that a forger learns nothing;
// refusals are for the envelope (not the bounce domain, 550), the size
// (552) and the rate (450).
func (in *Intake) Accept(ctx context.Context, env *smtpserver.Envelope, body []byte) (string, error) {
	v := in.cfg.VERP
	if v == nil {
		return "", errNotBounceDomain
	}
	for _, to := range env.To {
		at := strings.LastIndexByte(to, '@')
		if at < 0 || !strings.EqualFold(strings.TrimSuffix(to[at+1:], "."), strings.TrimSuffix(v.Domain, ".")) {
			return "", errNotBounceDomain
		}
	}
	now := in.deps.Now()
	remote := env.Remote.Addr().Unmap()
	trustedNet := in.trustedNet(remote)
	if !trustedNet && !in.lim.allow(remote, now) {
		in.stats.refuse("rate")
		in.deps.Logger.Info("bounce listener: rate limit", "remote", remote.String(), "network", network(remote).String())
		return "", errRate
	}
	if in.cfg.MaxReportSize > 0 && int64(len(body)) > in.cfg.MaxReportSize+receivedSlack {
		in.stats.refuse("too_big")
		return "", errTooBig
	}
	ref := "r" + strconv.FormatInt(now.UnixNano(), 16) + "-" + strconv.FormatUint(in.seq.Add(1), 10)
	r := &report{in: in, ctx: ctx, env: env, body: body, remote: remote, trustedNet: trustedNet, now: now, ref: ref}
	r.handle()
	return ref, nil
}

// trustedNet reports whether a is in a trusted reporter network.
func (in *Intake) trustedNet(a netip.Addr) bool {
	for _, p := range in.cfg.TrustedNets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// report is one report being handled.
type report struct {
	in         *Intake
	ctx        context.Context
	env        *smtpserver.Envelope
	body       []byte
	remote     netip.Addr
	trustedNet bool
	now        time.Time
	ref        string
}

// Reasons a report did not act.
const (
	ReasonNoVERP     = "no_verp"    // not sent to a VERP address (postmaster@, abuse@...)
	ReasonBadVERP    = "bad_verp"   // VERP form, but the check fails for every address it names
	ReasonOldVERP    = "old_verp"   // VERP of an earlier version, not bound to an address
	ReasonUntrusted  = "untrusted"  // DKIM-signed, but by no trusted domain (or the signature fails)
	ReasonUnreadable = "unreadable" // the parser refused it
	ReasonNotReport  = "not_a_report"
	ReasonAutoReply  = "auto_reply"
	ReasonNoRcpt     = "no_recipient" // a complaint naming nobody
	ReasonNoFailure  = "no_failure"   // a DSN reporting no failure (delayed, delivered)
)

// Ways a report acted.
const (
	ActedVERP           = "verp"
	ActedTrustedNetwork = "trusted_network"
	ActedTrustedDKIM    = "trusted_dkim"
)

func (r *report) log() *slog.Logger {
	return r.in.deps.Logger.With("ref", r.ref, "remote", r.remote.String(), "from", r.env.From)
}

func (r *report) handle() {
	in := r.in
	rep, err := dsn.Parse(r.body)
	if err != nil {
		path := r.keep(ReasonUnreadable)
		in.deps.Log.Write(&events.Record{Type: events.Bounce, Time: r.now, Status: "asynchronous report not understood",
			Detail: fmt.Sprintf("%v; %s", err, keptText(path))})
		r.log().Warn("asynchronous report not understood", "err", err, "file", path)
		return
	}
	// The addresses the report names, and what each stands for.
	var cands []string
	var statuses []*dsn.RecipientStatus
	switch rep.Kind {
	case dsn.KindAutoReply:
		in.stats.ignore(ReasonAutoReply)
		r.log().Debug("auto-reply to a bounce address ignored", "subject", rep.Subject)
		return
	case dsn.KindARF:
		addr := ""
		if rep.Feedback != nil {
			addr = normAddr(rep.Feedback.OriginalRcptTo)
		}
		if addr == "" {
			path := r.keep(ReasonNoRcpt)
			r.log().Warn("complaint without Original-Rcpt-To", "file", path)
			return
		}
		cands = []string{addr}
	case dsn.KindDSN:
		for i := range rep.Recipients {
			rs := &rep.Recipients[i]
			if rs.Action != "failed" {
				continue // delayed, delivered, relayed: nothing to learn
			}
			// The Original-Recipient is what we sent to when the site
			// forwarded (RFC 3464 §2.3.1); either may match the VERP.
			for _, a := range []string{rs.Final, rs.Original} {
				if a = normAddr(a); a != "" {
					cands = append(cands, a)
					statuses = append(statuses, rs)
				}
			}
		}
		if len(cands) == 0 {
			in.stats.ignore(ReasonNoFailure)
			return
		}
	default:
		path := r.keep(ReasonNotReport)
		r.log().Info("mail to a bounce address that is no report", "file", path)
		return
	}

	state, msgID, rcpt, ci := in.cfg.VERP.match(r.env.To, cands)
	if state == validVERP {
		addr := cands[ci]
		// Addresses of other statuses (the matched status may name a
		// forwarding target too; that is the mismatch logged below).
		var rest []string
		for i, c := range cands {
			if rep.Kind != dsn.KindDSN || statuses[i] != statuses[ci] {
				rest = append(rest, c)
			}
		}
		others := distinct(rest, addr)
		if others > 0 {
			in.stats.extra(others)
			r.log().Warn("report names other recipients than its VERP address; they are ignored",
				"verp_recipient", addr, "others", others, "message", msgID)
		}
		if rep.Kind == dsn.KindDSN {
			rs := statuses[ci]
			if f := normAddr(rs.Final); f != "" && f != addr {
				r.log().Warn("DSN Final-Recipient differs from the VERP recipient; acting on the VERP recipient",
					"final_recipient", f, "verp_recipient", addr, "message", msgID)
			}
			r.bounce(rep, rs, addr, msgID, fmt.Sprintf("reported by %s, rcpt #%d", rep.Reporter, rcpt))
		} else {
			r.complaint(rep, addr, msgID)
		}
		in.stats.act(ActedVERP)
		return
	}

	how := ""
	reason := map[verpState]string{noVERP: ReasonNoVERP, badVERP: ReasonBadVERP, oldVERP: ReasonOldVERP}[state]
	if r.trustedNet {
		how = ActedTrustedNetwork
	} else if d, signed := r.dkimDomain(); d != "" {
		how = ActedTrustedDKIM
		r.log().Info("report signed by a trusted domain", "dkim_domain", d)
	} else if signed {
		reason = ReasonUntrusted
	}
	if how == "" {
		named := len(distinctAll(cands))
		in.stats.unverified(Unverified{Time: r.now, Remote: r.remote.String(), From: r.env.From,
			To: strings.Join(r.env.To, ","), Kind: rep.Kind.String(), Reason: reason, Named: named})
		msg := "unverified report ignored: it may not change the quarantine"
		if reason == ReasonBadVERP {
			// A genuine report to a genuine return path that names another
			// address than the one it was made for looks the same.
			msg += " (the return path's check fails for every address the report names: forged, or naming someone else)"
		}
		r.log().Warn(msg, "reason", reason, "kind", rep.Kind.String(), "to", strings.Join(r.env.To, ","), "named", named)
		return
	}
	seen := map[string]bool{}
	extra := 0
	for i, addr := range cands {
		// Final and Original of one status both name it: act on the final
		// address when there is one.
		if rep.Kind == dsn.KindDSN {
			if f := normAddr(statuses[i].Final); f != "" && f != addr {
				continue
			}
		}
		if seen[addr] {
			continue
		}
		if len(seen) == MaxActions {
			extra++
			continue
		}
		seen[addr] = true
		if rep.Kind == dsn.KindDSN {
			r.bounce(rep, statuses[i], addr, "", fmt.Sprintf("reported by %s, %s", rep.Reporter, strings.ReplaceAll(how, "_", " ")))
		} else {
			r.complaint(rep, addr, "")
		}
	}
	if extra > 0 {
		in.stats.extra(extra)
	}
	in.stats.act(how)
}

// bounce applies one failed recipient of a DSN.
func (r *report) bounce(rep *dsn.Report, rs *dsn.RecipientStatus, addr, msgID, detail string) {
	in := r.in
	text := rs.Diagnostic
	if k := strings.Index(text, ";"); k >= 0 {
		text = strings.TrimSpace(text[k+1:])
	}
	v := in.deps.Classifier.Classify(rs.Code, rs.Status, text)
	in.deps.Log.Write(&events.Record{Type: events.Bounce, Time: r.now, ID: msgID, Recipient: addr, Code: rs.Code,
		EnhancedCode: rs.Status, Text: text, Reason: string(v.Reason), Class: string(v.Class), MXHost: rs.RemoteMTA,
		Status: "asynchronous bounce", Detail: detail})
	if in.deps.Top != nil {
		in.deps.Top.Add("async", rs.Code, rs.Status, bounce.Normalize(text), v)
	}
	if in.deps.CountsTowardQuarantine(v) {
		_, _, err := in.deps.Quarantine.Failure(addr, quarantine.Failure{Time: r.now, Code: rs.Code, Enhanced: rs.Status,
			Text: text, Reason: string(v.Reason), Class: string(v.Class), MessageID: msgID})
		if err != nil && !errors.Is(err, quarantine.ErrBadAddress) {
			in.deps.Logger.Warn("quarantine", "addr", addr, "err", err)
		}
	}
}

// complaint applies a feedback-loop report.
func (r *report) complaint(rep *dsn.Report, addr, msgID string) {
	in := r.in
	ftype := rep.Feedback.Type
	in.deps.Log.Write(&events.Record{Type: events.Complaint, Time: r.now, ID: msgID, Recipient: addr, Reason: "complaint",
		Status: "feedback-loop complaint: " + ftype, Detail: rep.Reporter})
	err := in.deps.Quarantine.Complaint(addr, quarantine.Failure{Time: r.now, Reason: "complaint", Text: ftype, MessageID: msgID})
	if err != nil {
		in.deps.Logger.Warn("quarantine", "addr", addr, "err", err)
	}
}

// dkimDomain returns the trusted domain whose DKIM signature on the report
// verifies, and whether the report carried a signature at all.
func (r *report) dkimDomain() (domain string, signed bool) {
	in := r.in
	if len(in.cfg.TrustedDomains) == 0 || in.deps.Resolver == nil {
		return "", false
	}
	ctx, cancel := context.WithTimeout(r.ctx, dkimTimeout)
	defer cancel()
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(r.body), &dkim.VerifyOptions{
		LookupTXT:        func(name string) ([]string, error) { return in.deps.Resolver.LookupTXT(ctx, name) },
		MaxVerifications: maxSignatures,
	})
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		r.log().Info("DKIM verification failed", "err", err)
	}
	for _, v := range vs {
		if v.Err != nil {
			r.log().Info("DKIM signature does not verify", "domain", v.Domain, "err", v.Err)
			continue
		}
		d := strings.ToLower(strings.TrimSuffix(v.Domain, "."))
		for _, t := range in.cfg.TrustedDomains {
			if d == t || strings.HasSuffix(d, "."+t) {
				return d, true
			}
		}
	}
	return "", len(vs) > 0
}

// keep stores the report for an operator and counts it as ignored.
func (r *report) keep(reason string) string {
	in := r.in
	in.stats.ignore(reason)
	path, dropped, why, err := in.keep.keep(r.ref+".eml", r.body)
	in.stats.kept(path != "", dropped, why)
	if err != nil {
		r.log().Error("keeping a report", "err", err)
	} else if why != "" {
		r.log().Warn("report not kept", "why", why)
	}
	return path
}

func keptText(path string) string {
	if path == "" {
		return "not kept"
	}
	return "kept in " + path
}

// distinct counts the addresses of cands other than addr.
func distinct(cands []string, addr string) int {
	n := 0
	for a := range distinctAll(cands) {
		if a != addr {
			n++
		}
	}
	return n
}

func distinctAll(cands []string) map[string]bool {
	m := make(map[string]bool, len(cands))
	for _, c := range cands {
		m[c] = true
	}
	return m
}

// Unverified is one report that could not act, for `penstock bounces`.
type Unverified struct {
	Time   time.Time `json:"time"`
	Remote string    `json:"remote"`
	From   string    `json:"from"`
	To     string    `json:"to"`
	Kind   string    `json:"kind"`
	Reason string    `json:"reason"`
	Named  int       `json:"named"` // recipients the report named
}

// Stats is the intake's tally since start.
type Stats struct {
	Acted      map[string]uint64 `json:"acted"`   // reports that changed the quarantine, by how they were trusted
	Ignored    map[string]uint64 `json:"ignored"` // reports that did not, by reason
	Unverified uint64            `json:"unverified"`
	// ExtraRecipients counts addresses named beyond what a report may act
	// on (besides its VERP recipient, or beyond MaxActions).
	ExtraRecipients uint64            `json:"extra_recipients_ignored"`
	Refused         map[string]uint64 `json:"refused"` // at SMTP level: rate, too_big
	Kept            uint64            `json:"kept"`
	KeptDropped     uint64            `json:"kept_dropped"`      // older kept reports removed for room
	NotKept         map[string]uint64 `json:"not_kept"`          // by reason: low_disk, too_big, disabled, error
	KeptFiles       int               `json:"kept_files"`        // in the folder now
	KeptBytes       int64             `json:"kept_bytes"`        // in the folder now
	Recent          []Unverified      `json:"recent_unverified"` // newest first
}

type stats struct {
	mu sync.Mutex
	s  Stats
}

func newStats() stats {
	return stats{s: Stats{Acted: map[string]uint64{}, Ignored: map[string]uint64{}, Refused: map[string]uint64{}, NotKept: map[string]uint64{}}}
}

func (s *stats) act(how string) { s.mu.Lock(); s.s.Acted[how]++; s.mu.Unlock() }
func (s *stats) ignore(why string) {
	s.mu.Lock()
	s.s.Ignored[why]++
	s.mu.Unlock()
}
func (s *stats) refuse(why string) { s.mu.Lock(); s.s.Refused[why]++; s.mu.Unlock() }
func (s *stats) extra(n int)       { s.mu.Lock(); s.s.ExtraRecipients += uint64(n); s.mu.Unlock() }

func (s *stats) kept(ok bool, dropped int, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ok {
		s.s.Kept++
	}
	s.s.KeptDropped += uint64(dropped)
	if why != "" {
		s.s.NotKept[why]++
	}
}

func (s *stats) unverified(u Unverified) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.s.Ignored[u.Reason]++
	s.s.Unverified++
	s.s.Recent = append([]Unverified{u}, s.s.Recent[:min(len(s.s.Recent), recentMax-1)]...)
}

// Stats returns a copy of the tally.
func (in *Intake) Stats() Stats {
	in.stats.mu.Lock()
	s := in.stats.s
	out := Stats{Unverified: s.Unverified, ExtraRecipients: s.ExtraRecipients, Kept: s.Kept, KeptDropped: s.KeptDropped,
		Acted: clone(s.Acted), Ignored: clone(s.Ignored), Refused: clone(s.Refused), NotKept: clone(s.NotKept),
		Recent: append([]Unverified(nil), s.Recent...)}
	in.stats.mu.Unlock()
	out.KeptFiles, out.KeptBytes = in.keep.usage()
	return out
}

func clone(m map[string]uint64) map[string]uint64 {
	c := make(map[string]uint64, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}
