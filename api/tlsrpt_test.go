package api

import (
	"strings"
	"testing"

	"github.com/penstock-mta/penstock/tlsrpt"
)

func (f *fake) TLSReports(domain string) TLSReportsView {
	v := TLSReportsView{SendAt: "00:30", Counts: map[string]uint64{"success": 2}}
	for _, d := range []string{"example.com", "example.org"} {
		if domain == "" || domain == d {
			v.Reports = append(v.Reports, TLSReportOfDomain{Day: "2026-12-06", Domain: d,
				Report: tlsrpt.Report{ReportID: "r-" + d, Policies: []tlsrpt.PolicyResult{{Policy: tlsrpt.Policy{Type: tlsrpt.PolicyNone, Domain: d}}}}})
		}
	}
	return v
}

func TestTLSReports(t *testing.T) {
	h, _ := newTestHandler(t)
	r := call(t, h, request{method: "GET", path: "/api/v1/tlsrpt?domain=Example.ORG."})
	if r.code != 200 || !strings.Contains(r.body, `"report-id": "r-example.org"`) || strings.Contains(r.body, "r-example.com") {
		t.Fatalf("%d %s", r.code, r.body)
	}
	r = call(t, h, request{method: "GET", path: "/api/v1/tlsrpt?domain=a/b"})
	if r.code != 400 {
		t.Fatalf("bad domain: %d %s", r.code, r.body)
	}
}
