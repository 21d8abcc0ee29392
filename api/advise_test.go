package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/advisor"
)

// Advise echoes its arguments in the report: the rule as the one rule
// reported, the period in hours as Records.
func (f *fake) Advise(ctx context.Context, rule string, since time.Duration) (*advisor.Report, error) {
	switch rule {
	case "nope":
		return nil, fmt.Errorf("advise: %w named %q", advisor.ErrUnknownRule, rule)
	case "broken":
		return nil, fmt.Errorf("advise: read delivery.log: input/output error")
	}
	return &advisor.Report{Records: int(since.Hours()), Rules: []advisor.RuleReport{{Name: rule}},
		Recommendations: []advisor.Recommendation{{Kind: advisor.Raise, Rule: rule, Diff: "- a\n+ b\n"}}}, nil
}

// TestAdviseRoute: GET /api/v1/advise passes rule and since (default 7d)
// to the backend and answers its report; a bad since, an unknown rule and a
// failing backend get their errors; no token, no advice.
func TestAdviseRoute(t *testing.T) {
	h, _ := newTestHandler(t)
	for _, c := range []struct {
		path    string
		code    int
		rule    string
		hours   int
		field   string
		noToken bool
	}{
		{path: "/api/v1/advise", code: 200, hours: 7 * 24},
		{path: "/api/v1/advise?rule=bulk&since=12h", code: 200, rule: "bulk", hours: 12},
		{path: "/api/v1/advise?since=2d", code: 200, hours: 48},
		{path: "/api/v1/advise?since=soon", code: 400, field: "since"},
		{path: "/api/v1/advise?since=-1h", code: 400, field: "since"},
		{path: "/api/v1/advise?rule=nope", code: 400, field: "rule"},
		{path: "/api/v1/advise?rule=broken", code: 500},
		{path: "/api/v1/advise", code: 401, field: "Authorization", noToken: true},
	} {
		rq := request{method: "GET", path: c.path}
		if c.noToken {
			rq.token = "-"
		}
		res := call(t, h, rq)
		if res.code != c.code {
			t.Errorf("%s: %d %s, want %d", c.path, res.code, res.body, c.code)
			continue
		}
		if c.code != http.StatusOK {
			if res.field() != c.field {
				t.Errorf("%s: field %q, want %q", c.path, res.field(), c.field)
			}
			continue
		}
		var rep advisor.Report
		if err := json.Unmarshal([]byte(res.body), &rep); err != nil {
			t.Fatalf("%s: %v", c.path, err)
		}
		if rep.Records != c.hours || len(rep.Rules) != 1 || rep.Rules[0].Name != c.rule ||
			len(rep.Recommendations) != 1 || rep.Recommendations[0].Diff != "- a\n+ b\n" {
			t.Errorf("%s: %+v", c.path, rep)
		}
	}
}
