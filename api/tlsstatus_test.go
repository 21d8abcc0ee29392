package api

import (
	"github.com/penstock-mta/penstock/tlsstatus"
)

func (f *fake) TLSStatus() TLSStatusView {
	return TLSStatusView{
		Domains: []tlsstatus.DomainPolicy{{Domain: "example.com", Source: "sts", Mode: "enforce", MX: []string{"mx.example.com"}}},
		Hosts:   []tlsstatus.HostOutcome{{Host: "mx.example.com", TLS: true, Version: "TLS1.3", Verified: true, Policy: "sts enforce"}},
	}
}
