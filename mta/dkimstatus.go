package mta

import (
	"slices"
	"time"

	"github.com/penstock-mta/penstock/api"
	"github.com/penstock-mta/penstock/dkim"
)

// dkimOutcomes are the signing stage's results, the index into a bucket's
// counts. The last catches a reason this list does not know yet.
var dkimOutcomes = [...]string{"signed", "third_party",
	dkim.ReasonNoFrom, dkim.ReasonBadFrom, dkim.ReasonNoKey, dkim.ReasonKeyNotActive, "other"}

const (
	dkimFine      = 5 * time.Minute // the last hour in 12 buckets
	dkimCoarse    = time.Hour       // the last day in 24 buckets
	dkimMaxDomain = 1000            // From domains kept; the rest count under dkimOtherDomain
	// dkimOtherDomain gathers the From domains past the bound and mail
	// whose From domain could not be read.
	dkimOtherDomain = "(other)"
)

type dkimBucket struct {
	slot   int64 // unix time / bucket width; a stale slot's counts are zero
	counts [len(dkimOutcomes)]uint32
}

// dkimDomain is one From domain's signing outcomes: the last hour at
// five-minute resolution, the last day at one hour, so a window is exact
// to within one bucket. About 1 KB a domain.
type dkimDomain struct {
	hour     [12]dkimBucket
	day      [24]dkimBucket
	signedBy string // the last signatures: "d=… s=… a=…, …"
	last     time.Time
}

func (d *dkimDomain) add(now time.Time, outcome int) {
	for _, ring := range []struct {
		b     []dkimBucket
		width time.Duration
	}{{d.hour[:], dkimFine}, {d.day[:], dkimCoarse}} {
		slot := now.Unix() / int64(ring.width/time.Second)
		b := &ring.b[slot%int64(len(ring.b))]
		if b.slot != slot {
			*b = dkimBucket{slot: slot}
		}
		b.counts[outcome]++
	}
	d.last = now
}

// dkimSum adds the buckets of ring that lie in the window ending now.
func dkimSum(ring []dkimBucket, width time.Duration, now time.Time) api.DKIMCounts {
	cur := now.Unix() / int64(width/time.Second)
	var c api.DKIMCounts
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
				c.Unsigned[dkimOutcomes[i]] += uint64(b.counts[i])
			}
		}
	}
	return c
}

// noteDomain counts res for its From domain. Called with d.mu held.
func (d *dkimStage) noteDomain(res dkim.Result, signedBy string) {
	outcome := 0
	switch {
	case !res.Signed():
		outcome = slices.Index(dkimOutcomes[:], res.Reason)
		if outcome < 2 {
			outcome = len(dkimOutcomes) - 1
		}
	case !res.Aligned:
		outcome = 1
	}
	name := res.FromDomain
	dom := d.domains[name]
	if dom == nil {
		if name == "" || len(d.domains) >= dkimMaxDomain {
			name = dkimOtherDomain
			dom = d.domains[name]
		}
		if dom == nil {
			dom = &dkimDomain{}
			d.domains[name] = dom
		}
	}
	if signedBy != "" {
		dom.signedBy = signedBy
	}
	dom.add(d.now(), outcome)
}

// DKIMDomains reports the signing status by From domain over the last
// hour and day (GET /api/v1/dkim).
func (m *MTA) DKIMDomains() []api.DKIMDomain { return m.dkim.Domains() }

// Domains reports, per From domain seen in the last day, whether its mail
// is signed and aligned, with counts over the last hour and day.
func (d *dkimStage) Domains() []api.DKIMDomain {
	now := d.now()
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]api.DKIMDomain, 0, len(d.domains))
	for name, dom := range d.domains {
		if now.Sub(dom.last) > 24*time.Hour {
			delete(d.domains, name) // nothing left in its windows
			continue
		}
		v := api.DKIMDomain{Domain: name, SignedBy: dom.signedBy, LastMessage: dom.last,
			LastHour: dkimSum(dom.hour[:], dkimFine, now), LastDay: dkimSum(dom.day[:], dkimCoarse, now)}
		v.Status = v.LastDay.Status()
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b api.DKIMDomain) int {
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
