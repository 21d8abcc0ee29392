package flow

import (
	"fmt"
	"strings"
	"time"
)

// scan looks across sites for a local problem, at most once a second.
// Caller holds c.mu.
func (c *Controller) scan(now time.Time, force bool) []LocalProblem {
	if !force && now.Sub(c.lastScan) < time.Second {
		return nil
	}
	c.lastScan = now
	active, erroring := 0, 0
	for key, s := range c.sites {
		a, e, _ := s.win.sums(now)
		if a == 0 {
			continue
		}
		// The site's window counts every attempt, its sources' windows
		// the errors tied to them.
		for _, ss := range c.sources[key] {
			_, se, _ := ss.win.sums(now)
			e += se
		}
		active++
		if e > 0 && float64(e)/float64(a) >= c.cfg.ErrorRatio {
			erroring++
		}
	}
	dnsFail := 0
	for d, t := range c.dns {
		if now.Sub(t) > c.cfg.Window {
			delete(c.dns, d)
			continue
		}
		dnsFail++
	}
	isLocal := (erroring >= c.cfg.LocalMinSites && float64(erroring) >= c.cfg.LocalSiteRatio*float64(active)) ||
		(dnsFail >= c.cfg.LocalMinSites && now.Sub(c.dnsOK) > c.cfg.Window/buckets)
	if isLocal == c.local {
		// No transition, but the numbers move: the text follows them (it
		// used to keep the numbers of the moment the problem began).
		c.localInfo.ErrorSites, c.localInfo.ActiveSites, c.localInfo.DNSDomains = erroring, active, dnsFail
		c.localInfo.Detail = localDetail(isLocal, erroring, active, dnsFail)
		return nil
	}
	c.local = isLocal
	lp := LocalProblem{Time: now, Active: isLocal, ErrorSites: erroring, ActiveSites: active, DNSDomains: dnsFail,
		Detail: localDetail(isLocal, erroring, active, dnsFail)}
	c.localInfo = lp
	return []LocalProblem{lp}
}

// localDetail is the local-problem indicator as one sentence with its
// numbers; a number that says nothing (0 of 0 sites) is left out.
func localDetail(on bool, erroring, active, dnsFail int) string {
	var parts []string
	if dnsFail > 0 {
		parts = append(parts, fmt.Sprintf("MX lookups are failing for %d domains", dnsFail))
	}
	if active > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d sites with recent attempts have errors", erroring, active))
	}
	numbers := strings.Join(parts, "; ")
	if !on {
		if numbers == "" {
			return "local problem cleared"
		}
		return "local problem cleared: " + numbers
	}
	cause := "our network, sources, TLS setup or the MTA itself"
	if dnsFail > 0 && erroring < max(1, active/2) {
		cause = "our resolver ([dns] nameservers) or our network"
	}
	if numbers == "" {
		return "the cause is most likely on our side (" + cause + ")"
	}
	return numbers + ": the cause is most likely on our side (" + cause + "), not the providers' view of our reputation"
}

// Local reports whether a local problem is in force, with its detail.
func (c *Controller) Local() (bool, LocalProblem) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.local, c.localInfo
}
