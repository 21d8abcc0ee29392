package whatif

import (
	"maps"

	"github.com/penstock-mta/penstock/advisor"
	"github.com/penstock-mta/penstock/mxrule"
)

// LimitsOf reads the limits of each rule, by name.
func LimitsOf(rules []*mxrule.Rule) map[string]Limits {
	out := make(map[string]Limits, len(rules))
	for _, r := range rules {
		out[r.Name] = Limits{MaxConnections: r.MaxConnections, MessagesPerHour: r.MessagesPerHour}
	}
	return out
}

// FromAdvice applies the advisor's raise and lower recommendations to
// current: the proposal the advisor itself makes.
func FromAdvice(current map[string]Limits, recs []advisor.Recommendation) map[string]Limits {
	out := maps.Clone(current)
	for _, r := range recs {
		if r.Kind != advisor.Raise && r.Kind != advisor.Lower || r.To <= 0 {
			continue
		}
		l, ok := out[r.Rule]
		if !ok {
			continue
		}
		switch r.Key {
		case "messages_per_hour":
			l.MessagesPerHour = r.To
		case "max_connections":
			l.MaxConnections = r.To
		}
		out[r.Rule] = l
	}
	return out
}
