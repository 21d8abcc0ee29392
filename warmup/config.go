package warmup

import (
	"regexp"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/events"
)

// Plans turns the [[warmup]] tables into one plan per source: a pool's
// entry warms each of its sources.
func Plans(cfg *config.Config) []Plan {
	ips := map[string]string{}
	for _, s := range cfg.Sources {
		ips[s.Name] = s.IP
	}
	members := map[string][]string{}
	for _, p := range cfg.Pools {
		for _, s := range p.Sources {
			members[p.Name] = append(members[p.Name], s.Source)
		}
	}
	var out []Plan
	for _, w := range cfg.Warmups {
		names := []string{w.Source}
		if w.Pool != "" {
			names = members[w.Pool]
		}
		for _, n := range names {
			out = append(out, Plan{Source: n, IP: ips[n], Rule: w.Rule, MX: []string(w.MX), Schedule: w.Schedule,
				HourlySpread: w.HourlySpread, MaxDeferralRatio: w.MaxDeferralRatio, MaxThrottles: w.MaxThrottles,
				MaxComplaints: w.MaxComplaints})
		}
	}
	return out
}

// Throttles is a Deps.Throttle that matches the flow-control patterns.
func Throttles(patterns []*regexp.Regexp) func(string) bool {
	return func(text string) bool {
		for _, p := range patterns {
			if p.MatchString(text) {
				return true
			}
		}
		return false
	}
}

// Feed observes the delivery log until ch closes: deliveries, deferrals
// (a throttle when the reply matches), bounces and complaints.
func (t *Tracker) Feed(ch <-chan *events.Record) {
	for r := range ch {
		var kind string
		switch r.Type {
		case events.Delivery:
			kind = Delivered
		case events.TransientFailure:
			kind = Deferred
		case events.Bounce:
			kind = Bounced
		case events.Complaint:
			kind = Complaint
		default:
			continue
		}
		if kind != Complaint && r.Code == 0 {
			continue // no remote reply: our side or the network, not the source's reputation
		}
		t.Observe(Outcome{Time: r.Time, SourceIP: r.SourceIP, Rule: r.Rule, MXHost: r.MXHost, Kind: kind, Text: r.Text,
			Recipient: r.Recipient})
	}
}
