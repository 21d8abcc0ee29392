// Package caps owns the cross-cutting limits of the [[cap]] tables: limits
// on connections, messages per hour and connection opens that count across
// MX rules (everything sent from one source; a provider group made of
// several rules' sites), checked by the queue in addition to the rule that
// governs a site.
//
// A cap selects a connection by up to three selectors, all of which must
// match when set: the source's name, the governing rule's name (one of a
// list) and an MX host of the site (one of a list of wildcards, matched as
// MX rules match). It counts once for all it selects, under quota keys of
// scope "cap" (quota.CapKey), so a cluster shares it through the same quota
// store and degraded rule as the rules' quotas.
//
// Matching is split in two because the halves change at different rates:
// Set.ForSite (rule and MX hosts) once per connection attempt, then
// Site.ForSource per source tried, a filter over a short list.
//
// caps never counts (package quota does) and never schedules (package queue
// does).
package caps

import (
	"fmt"
	"strings"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/mxrule"
	"github.com/penstock-mta/penstock/quota"
)

// Cap is one cross-cutting limit. Zero limits are unlimited; a cap sets at
// least one.
type Cap struct {
	Name              string
	Sources           []string // source names; empty: every source
	Rules             []string // rule names; empty: every rule
	MX                []string // MX host wildcards; empty: every site
	MaxConnections    int
	MessagesPerHour   int
	MaxConnectionRate quota.Rate

	keys [3]string // conn, rate, open: set by New
}

// ConnKey, RateKey and OpenKey are the quota keys the cap counts under
// (built once by New: they are asked for at every message).
func (c *Cap) ConnKey() string { return c.keys[0] }
func (c *Cap) RateKey() string { return c.keys[1] }
func (c *Cap) OpenKey() string { return c.keys[2] }

// Limits describes the cap's limits for status details and explain,
// "max_connections 300, messages_per_hour 5000".
func (c *Cap) Limits() string {
	var parts []string
	if c.MaxConnections > 0 {
		parts = append(parts, fmt.Sprintf("max_connections %d", c.MaxConnections))
	}
	if c.MessagesPerHour > 0 {
		parts = append(parts, fmt.Sprintf("messages_per_hour %d", c.MessagesPerHour))
	}
	if !c.MaxConnectionRate.IsZero() {
		parts = append(parts, "max_connection_rate "+c.MaxConnectionRate.String())
	}
	return strings.Join(parts, ", ")
}

func (c *Cap) site(rule string, mxHosts []string) bool {
	if len(c.Rules) > 0 && !contains(c.Rules, rule) {
		return false
	}
	if len(c.MX) == 0 {
		return true
	}
	for _, p := range c.MX {
		for _, h := range mxHosts {
			if mxrule.MatchPattern(p, h) {
				return true
			}
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Set is the configured caps. A nil *Set has none.
type Set struct {
	caps []*Cap
}

// New checks the caps (a name, unique; a selector; a limit; valid
// wildcards) and returns their Set.
func New(cs []Cap) (*Set, error) {
	s := &Set{}
	seen := map[string]bool{}
	for i := range cs {
		c := cs[i]
		switch {
		case c.Name == "":
			return nil, fmt.Errorf("caps: cap #%d has no name", i+1)
		case seen[c.Name]:
			return nil, fmt.Errorf("caps: duplicate cap %q", c.Name)
		case len(c.Sources)+len(c.Rules)+len(c.MX) == 0:
			return nil, fmt.Errorf("caps: cap %q selects nothing: give a source, rule or mx", c.Name)
		case c.MaxConnections < 0 || c.MessagesPerHour < 0:
			return nil, fmt.Errorf("caps: cap %q has a negative limit", c.Name)
		case c.MaxConnections == 0 && c.MessagesPerHour == 0 && c.MaxConnectionRate.IsZero():
			return nil, fmt.Errorf("caps: cap %q sets no limit", c.Name)
		}
		for _, p := range c.MX {
			if err := mxrule.ValidatePattern(p); err != nil {
				return nil, fmt.Errorf("caps: cap %q: %w", c.Name, err)
			}
		}
		seen[c.Name] = true
		k := quota.CapKey(c.Name)
		c.keys = [3]string{k.String(), k.Rate().String(), k.Opens().String()}
		s.caps = append(s.caps, &c)
	}
	return s, nil
}

// FromConfig builds the Set of a configuration's [[cap]] tables (validated
// by config already; an error here names the file and line).
func FromConfig(cfg *config.Config) (*Set, error) {
	cs := make([]Cap, 0, len(cfg.Caps))
	for _, c := range cfg.Caps {
		n, per, err := config.ParseRate(c.MaxConnectionRate)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: [[cap]] %q: max_connection_rate: %w", cfg.File, c.Line, c.Name, err)
		}
		cs = append(cs, Cap{
			Name: c.Name, Sources: c.Source, Rules: c.Rule, MX: c.MX,
			MaxConnections: c.MaxConnections, MessagesPerHour: c.MessagesPerHour,
			MaxConnectionRate: quota.Rate{N: n, Per: per},
		})
	}
	s, err := New(cs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.File, err)
	}
	return s, nil
}

// All returns the caps in configuration order. They are shared: callers
// must not modify them.
func (s *Set) All() []*Cap {
	if s == nil {
		return nil
	}
	return s.caps
}

// Site is the caps that apply to one site under its rule, before the
// source is known.
type Site []*Cap

// ForSite returns the caps whose rule and MX selectors match a site
// governed by rule with these MX hosts.
func (s *Set) ForSite(rule string, mxHosts []string) Site {
	if s == nil {
		return nil
	}
	var out Site
	for _, c := range s.caps {
		if c.site(rule, mxHosts) {
			out = append(out, c)
		}
	}
	return out
}

// ForSource returns the caps of the site that apply to a connection from
// the named source ("" for the address the kernel chooses, which only caps
// without a source selector apply to).
func (st Site) ForSource(source string) []*Cap {
	var out []*Cap
	for _, c := range st {
		if len(c.Sources) == 0 || contains(c.Sources, source) {
			out = append(out, c)
		}
	}
	return out
}
