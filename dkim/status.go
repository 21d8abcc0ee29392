package dkim

import (
	"slices"
	"time"
)

// DomainStatus is one sending (From) domain in GET /api/v1/dkim: whether its
// mail leaves signed and DMARC-aligned, from the signing stage's counts.
type DomainStatus struct {
	Domain string `json:"domain"` // "(other)": past the bound of domains kept, or no readable From
	// Status sums up the last day: signed (every message signed, aligned),
	// third_party (signed, never aligned), unsigned, or mixed.
	Status      string        `json:"status"`
	SignedBy    string        `json:"signed_by,omitempty"` // the last signatures made: "d=... s=... a=..."
	LastHour    SigningCounts `json:"last_hour"`           // to within five minutes
	LastDay     SigningCounts `json:"last_day"`            // to within one hour
	LastMessage time.Time     `json:"last_message"`
}

// SigningCounts counts messages through the signing stage.
type SigningCounts struct {
	Signed     uint64 `json:"signed"`      // signed by the From domain (or its organisational domain)
	ThirdParty uint64 `json:"third_party"` // signed by another domain only: not DMARC-aligned
	// Unsigned counts by reason: no_key, key_not_active, no_from,
	// bad_from.
	Unsigned map[string]uint64 `json:"unsigned,omitempty"`
}

// Status names the mix: signed, third_party, unsigned, mixed, or none.
func (c SigningCounts) Status() string {
	var unsigned uint64
	for _, n := range c.Unsigned {
		unsigned += n
	}
	switch {
	case c.Signed == 0 && c.ThirdParty == 0 && unsigned == 0:
		return "none"
	case c.ThirdParty == 0 && unsigned == 0:
		return "signed"
	case c.Signed == 0 && unsigned == 0:
		return "third_party"
	case c.Signed == 0 && c.ThirdParty == 0:
		return "unsigned"
	}
	return "mixed"
}

// stageOutcomes are the signing stage's results, the index into a bucket's
// counts. The last catches a reason this list does not know yet.
var stageOutcomes = [...]string{"signed", "third_party",
	ReasonNoFrom, ReasonBadFrom, ReasonNoKey, ReasonKeyNotActive, "other"}

const (
	fineBucket   = 5 * time.Minute // the last hour in 12 buckets
	coarseBucket = time.Hour       // the last day in 24 buckets
	maxDomains   = 1000            // From domains kept; the rest count under OtherDomain
	// OtherDomain gathers the From domains past the bound and mail
	// whose From domain could not be read.
	OtherDomain = "(other)"
)

type outcomeBucket struct {
	slot   int64 // unix time / bucket width; a stale slot's counts are zero
	counts [len(stageOutcomes)]uint32
}

// domainOutcomes is one From domain's signing outcomes: the last hour at
// five-minute resolution, the last day at one hour, so a window is exact
// to within one bucket. About 1 KB a domain.
type domainOutcomes struct {
	hour     [12]outcomeBucket
	day      [24]outcomeBucket
	signedBy string // the last signatures: "d=… s=… a=…, …"
	last     time.Time
}

func (d *domainOutcomes) add(now time.Time, outcome int) {
	for _, ring := range []struct {
		b     []outcomeBucket
		width time.Duration
	}{{d.hour[:], fineBucket}, {d.day[:], coarseBucket}} {
		slot := now.Unix() / int64(ring.width/time.Second)
		b := &ring.b[slot%int64(len(ring.b))]
		if b.slot != slot {
			*b = outcomeBucket{slot: slot}
		}
		b.counts[outcome]++
	}
	d.last = now
}

// sumWindow adds the buckets of ring that lie in the window ending now.
func sumWindow(ring []outcomeBucket, width time.Duration, now time.Time) SigningCounts {
	cur := now.Unix() / int64(width/time.Second)
	var c SigningCounts
	for _, b := range ring {
		if b.slot <= cur-int64(len(ring)) || b.slot > cur {
			continue
		}
		c.Signed += uint64(b.counts[0])
		c.ThirdParty += uint64(b.counts[1])
		for i := 2; i < len(b.counts); i++ {
			if b.counts[i] > 0 {
				if c.Unsigned == nil {
					c.Unsigned = map[string]uint64{}
				}
				c.Unsigned[stageOutcomes[i]] += uint64(b.counts[i])
			}
		}
	}
	return c
}

// noteDomain counts res for its From domain. Called with d.mu held.
func (d *Stage) noteDomain(res Result, signedBy string) {
	outcome := 0
	switch {
	case !res.Signed():
		outcome = slices.Index(stageOutcomes[:], res.Reason)
		if outcome < 2 {
			outcome = len(stageOutcomes) - 1
		}
	case !res.Aligned:
		outcome = 1
	}
	name := res.FromDomain
	dom := d.domains[name]
	if dom == nil {
		if name == "" || len(d.domains) >= maxDomains {
			name = OtherDomain
			dom = d.domains[name]
		}
		if dom == nil {
			dom = &domainOutcomes{}
			d.domains[name] = dom
		}
	}
	if signedBy != "" {
		dom.signedBy = signedBy
	}
	dom.add(d.now(), outcome)
}

// Domains reports, per From domain seen in the last day, whether its mail
// is signed and aligned, with counts over the last hour and day.
func (d *Stage) Domains() []DomainStatus {
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]DomainStatus, 0, len(d.domains))
	for name, dom := range d.domains {
		if now.Sub(dom.last) > 24*time.Hour {
			delete(d.domains, name) // nothing left in its windows
			continue
		}
		v := DomainStatus{Domain: name, SignedBy: dom.signedBy, LastMessage: dom.last,
			LastHour: sumWindow(dom.hour[:], fineBucket, now), LastDay: sumWindow(dom.day[:], coarseBucket, now)}
		v.Status = v.LastDay.Status()
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b DomainStatus) int {
		if a.Domain < b.Domain {
			return -1
		}
		if a.Domain > b.Domain {
			return 1
		}
		return 0
	})
	return out
}
