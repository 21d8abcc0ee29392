package main

import (
	"strings"
	"testing"

	"github.com/penstock-mta/penstock/api"
	"github.com/penstock-mta/penstock/tlsrpt"
)

func (b *opBackend) TLSReports(domain string) api.TLSReportsView {
	v := api.TLSReportsView{Enabled: true, SendAt: "00:30", Counts: map[string]uint64{"success": 7, tlsrpt.CertificateExpired: 2}}
	rep := tlsrpt.Report{ReportID: "r1", Policies: []tlsrpt.PolicyResult{{
		Policy:  tlsrpt.Policy{Type: tlsrpt.PolicyNone, Domain: "example.com"},
		Summary: tlsrpt.Summary{Successful: 7, Failed: 2},
		FailureDetails: []tlsrpt.FailureDetail{{ResultType: tlsrpt.CertificateExpired, ReceivingMXHostname: "mx.example.com",
			ReceivingIP: "192.0.2.1", FailedSessionCount: 2, AdditionalInformation: "STARTTLS: x509: certificate has expired"}},
	}}}
	if domain == "" || domain == "example.com" {
		v.Reports = append(v.Reports, api.TLSReportOfDomain{Day: "2026-12-06", Domain: "example.com", Report: rep})
	}
	return v
}

func TestTLSRPTCommand(t *testing.T) {
	_, flags := opServer(t)
	code, out, errs := runOp(t, append([]string{"tlsrpt"}, flags...)...)
	for _, want := range []string{"TLS reporting on: finished days are sent daily at 00:30 UTC", "2026-12-06  example.com",
		"7 successful, 2 failed", "2 × certificate-expired  mx.example.com 192.0.2.1", "x509: certificate has expired"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("tlsrpt lacks %q: %d\n%s%s", want, code, out, errs)
		}
	}
	if code, out, _ := runOp(t, append([]string{"tlsrpt", "-domain", "other.example"}, flags...)...); code != 0 || !strings.Contains(out, "no TLS outcomes recorded") {
		t.Errorf("other domain: %d\n%s", code, out)
	}
	if code, out, _ := runOp(t, append([]string{"tlsrpt", "-json"}, flags...)...); code != 0 || !strings.Contains(out, `"result-type": "certificate-expired"`) {
		t.Errorf("-json: %d\n%s", code, out)
	}
	if code, _, _ := runOp(t, append([]string{"tlsrpt", "extra"}, flags...)...); code != 2 {
		t.Errorf("extra argument: exit %d", code)
	}
}
