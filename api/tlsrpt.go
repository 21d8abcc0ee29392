package api

import (
	"net/http"
	"strings"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/tlsrpt"
)

// TLSReports is an optional part (Deps): the SMTP TLS reports
// (RFC 8460) the node holds, as they would be sent.
type TLSReports interface {
	// TLSReports returns the reports of every day held (today's so far
	// included), of one policy domain or of all ("").
	TLSReports(domain string) TLSReportsView
}

// TLSReportsView is GET /api/v1/tlsrpt.
type TLSReportsView struct {
	Enabled bool                `json:"enabled"` // [tlsrpt] enabled: reports are sent
	SendAt  string              `json:"send_at"` // UTC
	Counts  map[string]uint64   `json:"counts"`  // sessions since start by result
	Reports []TLSReportOfDomain `json:"reports"`
}

// TLSReportOfDomain is one report: the day, the policy domain, and the
// report's JSON as sent.
type TLSReportOfDomain struct {
	Day    string        `json:"day"`
	Domain string        `json:"domain"`
	Report tlsrpt.Report `json:"report"`
}

func (h *handler) tlsReports(w http.ResponseWriter, r *http.Request) {
	tr := h.d.TLSReports
	if tr == nil {
		writeErr(w, http.StatusNotFound, "TLS reporting is not available on this node", "")
		return
	}
	domain := strings.ToLower(strings.TrimSuffix(r.URL.Query().Get("domain"), "."))
	if strings.ContainsAny(domain, "/ \t") {
		writeErr(w, http.StatusBadRequest, "domain: not a domain name", "domain")
		return
	}
	writeJSON(w, http.StatusOK, tr.TLSReports(domain))
}

// TLSReportsOf serves TLSReports from the recorder of the TLS outcomes and
// the configuration in force.
func TLSReportsOf(rec *tlsrpt.Recorder, cfg func() *config.Config) TLSReports {
	return tlsReports{rec, cfg}
}

type tlsReports struct {
	rec *tlsrpt.Recorder
	cfg func() *config.Config
}

func (t tlsReports) TLSReports(domain string) TLSReportsView {
	cfg := t.cfg()
	v := TLSReportsView{Enabled: cfg.TLSRPT.Enabled, SendAt: cfg.TLSRPT.SendAt, Counts: t.rec.Counts(),
		Reports: []TLSReportOfDomain{}}
	org := tlsrpt.OrgOf(cfg)
	for _, day := range t.rec.Days() {
		reps, err := t.rec.Reports(day, domain, org)
		if err != nil {
			continue
		}
		for _, r := range reps {
			v.Reports = append(v.Reports, TLSReportOfDomain{Day: day, Domain: r.Domain, Report: r})
		}
	}
	return v
}
