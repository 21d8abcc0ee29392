package config

import (
	"strings"
)

// Warmup is one [[warmup]]: a source (or every source of a pool) warming
// up towards one provider group, named by MX rule or MX host patterns.
type Warmup struct {
	Source   string   `toml:"source"` // a [[source]] name, or
	Pool     string   `toml:"pool"`   // a [[pool]] name: each of its sources warms
	Rule     string   `toml:"rule"`   // an [[mx_rule]] (or shipped rule) name, or
	MX       Patterns `toml:"mx"`     // MX host wildcards
	Schedule []int    `toml:"schedule"`
	// HourlySpread spreads each day's volume over its 24 hours.
	HourlySpread     bool    `toml:"hourly_spread"`
	MaxDeferralRatio float64 `toml:"max_deferral_ratio"` // default 0.10
	MaxThrottles     int     `toml:"max_throttles"`      // default 3 a day
	MaxComplaints    int     `toml:"max_complaints"`     // default 1 a day
}

func (v *validator) warmups(ws []Warmup, c *Config) {
	sources, pools, rules := map[string]bool{}, map[string]bool{}, ruleNames(c)
	for _, s := range c.Sources {
		sources[s.Name] = true
	}
	for _, p := range c.Pools {
		pools[p.Name] = true
	}
	seen := map[string]int{}
	for i, w := range ws {
		at := entry("warmup", i, "")
		switch {
		case (w.Source == "") == (w.Pool == ""):
			v.errf(at, "source", "give exactly one of source = \"ip3\" or pool = \"bulk\"")
		case w.Source != "" && !sources[w.Source]:
			v.errf(at, "source", "no [[source]] is named %q", w.Source)
		case w.Pool != "" && !pools[w.Pool]:
			v.errf(at, "pool", "no [[pool]] is named %q", w.Pool)
		}
		switch {
		case (w.Rule == "") == (len(w.MX) == 0):
			v.errf(at, "rule", "give exactly one of rule = \"yahoo\" (an [[mx_rule]] name) or mx = \"*.yahoodns.net\"")
		case w.Rule != "" && !rules[w.Rule]:
			v.errf(at, "rule", "no [[mx_rule]] (nor shipped rule) is named %q", w.Rule)
		}
		for j, p := range w.MX {
			key := "mx"
			if len(w.MX) > 1 {
				key = elem("mx", j)
			}
			if !validPattern(p) {
				v.errf(at, key, "%q is not an MX wildcard: use letters, digits, '-', '.', '*' and '?'", p)
			}
		}
		if len(w.Schedule) == 0 {
			v.errf(at, "schedule", "missing: give daily volumes like [50, 100, 250, 500] (after the last step: unlimited)")
		}
		for j, n := range w.Schedule {
			if n < 1 {
				v.errf(at, elem("schedule", j), "%d: a day's volume must be at least 1", n)
			}
		}
		if w.MaxDeferralRatio != 0 {
			v.ratio(at, "max_deferral_ratio", w.MaxDeferralRatio)
		}
		if w.MaxThrottles < 0 {
			v.errf(at, "max_throttles", "%d is negative (0 takes the default of 3)", w.MaxThrottles)
		}
		if w.MaxComplaints < 0 {
			v.errf(at, "max_complaints", "%d is negative (0 takes the default of 1)", w.MaxComplaints)
		}
		pair := w.Source + "|" + w.Pool + "|" + w.Rule + "|" + strings.Join(w.MX, ",")
		if first, dup := seen[pair]; dup {
			v.errf(at, "source", "the same source and group as [[warmup]] #%d", first+1)
		}
		seen[pair] = i
	}
}
