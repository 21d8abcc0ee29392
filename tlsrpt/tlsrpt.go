package tlsrpt

import (
	"encoding/json"
	"fmt"
	"github.com/penstock-mta/penstock/tlspolicy"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/penstock-mta/penstock/spool"
)

// Policy types (RFC 8460 §4.3, "policy-type").
const (
	PolicySTS  = "sts"
	PolicyTLSA = "tlsa"
	PolicyNone = "no-policy-found"
)

// Result types of failed sessions (RFC 8460 §4.3).
const (
	StartTLSNotSupported    = "starttls-not-supported"
	CertificateHostMismatch = "certificate-host-mismatch"
	CertificateExpired      = "certificate-expired"
	CertificateNotTrusted   = "certificate-not-trusted"
	ValidationFailure       = "validation-failure"
	TLSAInvalid             = "tlsa-invalid"
	DNSSECInvalid           = "dnssec-invalid"
	DANERequired            = "dane-required"
	STSPolicyFetchError     = "sts-policy-fetch-error"
	STSPolicyInvalid        = "sts-policy-invalid"
	STSWebPKIInvalid        = "sts-webpki-invalid"
)

// Bucket is the spool KV bucket the recorder keeps its days in.
const Bucket = "tlsrpt"

// dayLayout names a UTC day.
const dayLayout = "2006-01-02"

// maxFailureDetails bounds the distinct failure details kept per policy and
// day; failures beyond it are counted in the summary only (RFC 8460 §4.4
// makes failure-details a list, with no bound of its own).
const maxFailureDetails = 200

// Result is one outgoing session's TLS outcome, as the queue (and the
// MTA-STS/DANE policy code) reports it.
type Result struct {
	Time time.Time // zero: the recorder's clock
	// PolicyDomain is the recipient domain the policy was looked up for.
	PolicyDomain string
	// PolicyType is PolicySTS, PolicyTLSA or PolicyNone ("" = PolicyNone).
	PolicyType string
	// PolicyStrings is the policy as published (the STS policy's lines, the
	// TLSA records in presentation format); optional.
	PolicyStrings []string
	// PolicyMX is the MTA-STS policy's mx patterns; optional.
	PolicyMX    []string
	MXHost      string // the receiving MX host name
	ReceivingIP string
	SendingIP   string // optional
	Success     bool
	// FailureType is one of the result-type constants when !Success
	// ("" = ValidationFailure).
	FailureType string
	// Detail says what failed, for the report's additional-information.
	Detail string
}

// failure is one failure-details entry being counted.
type failure struct {
	ResultType  string `json:"t"`
	SendingIP   string `json:"s,omitempty"`
	MXHost      string `json:"h,omitempty"`
	ReceivingIP string `json:"r,omitempty"`
	Detail      string `json:"d,omitempty"`
	Count       int64  `json:"n"`
}

// policyAgg counts the sessions under one policy.
type policyAgg struct {
	Type     string     `json:"type"`
	Strings  []string   `json:"strings,omitempty"`
	MX       []string   `json:"mx,omitempty"`
	Success  int64      `json:"success"`
	Failed   int64      `json:"failed"`
	Failures []*failure `json:"failures,omitempty"`
}

// domainAgg is one policy domain's day: the value stored in the KV.
type domainAgg struct {
	Policies []*policyAgg `json:"policies"`
}

type dayDomain struct{ day, domain string }

// Recorder aggregates Results per UTC day and policy domain. It is safe for
// concurrent use.
type Recorder struct {
	kv  spool.KV
	now func() time.Time

	mu     sync.Mutex
	days   map[dayDomain]*domainAgg
	dirty  map[dayDomain]bool
	counts map[string]uint64 // by "success" or result type, since start
}

// New returns a recorder kept in kv (nil: memory only) and loads the days
// saved there.
func New(kv spool.KV, now func() time.Time) (*Recorder, error) {
	if now == nil {
		now = time.Now
	}
	r := &Recorder{kv: kv, now: now, days: map[dayDomain]*domainAgg{}, dirty: map[dayDomain]bool{},
		counts: map[string]uint64{}}
	if kv == nil {
		return r, nil
	}
	err := kv.ForEach("d/", func(key string, val []byte) error {
		day, domain, ok := strings.Cut(strings.TrimPrefix(key, "d/"), "/")
		if !ok {
			return nil
		}
		var a domainAgg
		if err := json.Unmarshal(val, &a); err != nil {
			return fmt.Errorf("tlsrpt: stored day %s: %w", key, err)
		}
		r.days[dayDomain{day, domain}] = &a
		return nil
	})
	return r, err
}

func kvKey(k dayDomain) string { return "d/" + k.day + "/" + k.domain }

// Record counts one session outcome.
func (r *Recorder) Record(res Result) {
	domain := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(res.PolicyDomain), "."))
	if domain == "" || strings.ContainsAny(domain, "/ \t\r\n") {
		return
	}
	if res.PolicyType == "" {
		res.PolicyType = PolicyNone
	}
	if !res.Success && res.FailureType == "" {
		res.FailureType = ValidationFailure
	}
	t := res.Time
	if t.IsZero() {
		t = r.now()
	}
	k := dayDomain{t.UTC().Format(dayLayout), domain}

	r.mu.Lock()
	defer r.mu.Unlock()
	if res.Success {
		r.counts["success"]++
	} else {
		r.counts[res.FailureType]++
	}
	a := r.days[k]
	if a == nil {
		a = &domainAgg{}
		r.days[k] = a
	}
	var p *policyAgg
	for _, x := range a.Policies {
		if x.Type == res.PolicyType && slices.Equal(x.Strings, res.PolicyStrings) {
			p = x
			break
		}
	}
	if p == nil {
		p = &policyAgg{Type: res.PolicyType, Strings: slices.Clone(res.PolicyStrings), MX: slices.Clone(res.PolicyMX)}
		a.Policies = append(a.Policies, p)
	}
	r.dirty[k] = true
	if res.Success {
		p.Success++
		return
	}
	p.Failed++
	f := failure{ResultType: res.FailureType, SendingIP: res.SendingIP, MXHost: strings.TrimSuffix(res.MXHost, "."),
		ReceivingIP: res.ReceivingIP, Detail: res.Detail}
	for _, x := range p.Failures {
		if x.ResultType == f.ResultType && x.SendingIP == f.SendingIP && x.MXHost == f.MXHost &&
			x.ReceivingIP == f.ReceivingIP && x.Detail == f.Detail {
			x.Count++
			return
		}
	}
	if len(p.Failures) < maxFailureDetails {
		f.Count = 1
		p.Failures = append(p.Failures, &f)
	}
}

// Counts returns the sessions recorded since start by result: "success" or
// the failure's result type.
func (r *Recorder) Counts() map[string]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.counts)
}

// Flush saves the days changed since the last Flush. On an error the days
// stay dirty for the next one.
func (r *Recorder) Flush() error {
	if r.kv == nil {
		return nil
	}
	r.mu.Lock()
	type pending struct {
		k   dayDomain
		val []byte
	}
	var ps []pending
	for k := range r.dirty {
		b, err := json.Marshal(r.days[k])
		if err != nil {
			r.mu.Unlock()
			return err
		}
		ps = append(ps, pending{k, b})
		delete(r.dirty, k)
	}
	r.mu.Unlock()
	var firstErr error
	for _, p := range ps {
		if err := r.kv.Put(kvKey(p.k), p.val); err != nil {
			r.mu.Lock()
			r.dirty[p.k] = true
			r.mu.Unlock()
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	return firstErr
}

// Days returns the UTC days held, oldest first.
func (r *Recorder) Days() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for k := range r.days {
		if !seen[k.day] {
			seen[k.day] = true
			out = append(out, k.day)
		}
	}
	sort.Strings(out)
	return out
}

// Forget drops one domain's day (its report is sent, or it is too old).
func (r *Recorder) Forget(day, domain string) error {
	k := dayDomain{day, domain}
	r.mu.Lock()
	delete(r.days, k)
	delete(r.dirty, k)
	r.mu.Unlock()
	if r.kv == nil {
		return nil
	}
	return r.kv.Delete(kvKey(k))
}

// Org is who the reports come from.
type Org struct {
	Name      string // organization-name
	Contact   string // contact-info
	Submitter string // the sending host name (TLS-Report-Submitter)
}

// Reports builds the report of each policy domain for day (YYYY-MM-DD),
// sorted by domain; domain, when not "", keeps that one only.
func (r *Recorder) Reports(day, domain string, org Org) ([]Report, error) {
	start, err := time.Parse(dayLayout, day)
	if err != nil {
		return nil, fmt.Errorf("tlsrpt: day %q: want YYYY-MM-DD", day)
	}
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Report
	for k, a := range r.days {
		if k.day != day || (domain != "" && k.domain != domain) {
			continue
		}
		out = append(out, buildReport(start, k.domain, a, org))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Domain < out[j].Domain })
	return out, nil
}

func buildReport(start time.Time, domain string, a *domainAgg, org Org) Report {
	rep := Report{
		Domain:           domain,
		OrganizationName: org.Name,
		DateRange: DateRange{Start: start.UTC().Format(time.RFC3339),
			End: start.Add(24*time.Hour - time.Second).UTC().Format(time.RFC3339)},
		ContactInfo: org.Contact,
		// Deterministic: a report sent again after a crash keeps its id.
		ReportID: start.UTC().Format(time.RFC3339) + "_" + domain + "@" + org.Submitter,
	}
	for _, p := range a.Policies {
		pr := PolicyResult{
			Policy:  Policy{Type: p.Type, String: slices.Clone(p.Strings), Domain: domain, MXHost: slices.Clone(p.MX)},
			Summary: Summary{Successful: p.Success, Failed: p.Failed},
		}
		for _, f := range p.Failures {
			pr.FailureDetails = append(pr.FailureDetails, FailureDetail{ResultType: f.ResultType, SendingMTAIP: f.SendingIP,
				ReceivingMXHostname: f.MXHost, ReceivingIP: f.ReceivingIP, FailedSessionCount: f.Count,
				AdditionalInformation: f.Detail})
		}
		rep.Policies = append(rep.Policies, pr)
	}
	return rep
}

// Report is the aggregate report of RFC 8460 §4.4. Domain is not part of
// the JSON: it is the policy domain the report is for.
type Report struct {
	Domain           string         `json:"-"`
	OrganizationName string         `json:"organization-name"`
	DateRange        DateRange      `json:"date-range"`
	ContactInfo      string         `json:"contact-info"`
	ReportID         string         `json:"report-id"`
	Policies         []PolicyResult `json:"policies"`
}

// DateRange is the report's period, RFC 3339 in UTC.
type DateRange struct {
	Start string `json:"start-datetime"`
	End   string `json:"end-datetime"`
}

// PolicyResult is one policies[] entry.
type PolicyResult struct {
	Policy         Policy          `json:"policy"`
	Summary        Summary         `json:"summary"`
	FailureDetails []FailureDetail `json:"failure-details,omitempty"`
}

// Policy is the policy the sessions were under.
type Policy struct {
	Type   string   `json:"policy-type"`
	String []string `json:"policy-string,omitempty"`
	Domain string   `json:"policy-domain"`
	MXHost []string `json:"mx-host,omitempty"`
}

// Summary counts the sessions.
type Summary struct {
	Successful int64 `json:"total-successful-session-count"`
	Failed     int64 `json:"total-failure-session-count"`
}

// FailureDetail is one failure-details entry.
type FailureDetail struct {
	ResultType            string `json:"result-type"`
	SendingMTAIP          string `json:"sending-mta-ip,omitempty"`
	ReceivingMXHostname   string `json:"receiving-mx-hostname,omitempty"`
	ReceivingIP           string `json:"receiving-ip,omitempty"`
	FailedSessionCount    int64  `json:"failed-session-count"`
	AdditionalInformation string `json:"additional-information,omitempty"`
}

// JSON is the report as sent.
func (rep Report) JSON() ([]byte, error) { return json.Marshal(rep) }

// Prune forgets every day before day (YYYY-MM-DD): what is kept when
// reports are not sent stays bounded.
func (r *Recorder) Prune(day string) error {
	r.mu.Lock()
	var old []dayDomain
	for k := range r.days {
		if k.day < day {
			old = append(old, k)
		}
	}
	r.mu.Unlock()
	var firstErr error
	for _, k := range old {
		if err := r.Forget(k.day, k.domain); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// Day names t's UTC day as the recorder does (YYYY-MM-DD).
func Day(t time.Time) string { return t.UTC().Format(dayLayout) }

// Report implements tlspolicy.Reporter: the delivery path's TLS outcome,
// under the policy it found, counted for the day's report.
func (r *Recorder) Report(o tlspolicy.Outcome) {
	res := Result{PolicyDomain: o.Domain, MXHost: o.MXHost, ReceivingIP: o.MXIP, Success: o.Success, Detail: o.Detail}
	switch o.PolicyType {
	case tlspolicy.SourceSTS:
		res.PolicyType = PolicySTS
	case tlspolicy.SourceDANE:
		res.PolicyType = PolicyTLSA
	default:
		res.PolicyType = PolicyNone
	}
	if !o.Success {
		res.FailureType = o.Result
	}
	r.Record(res)
}
