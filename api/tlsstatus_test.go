package api

import (
	"github.com/penstock-mta/penstock/tlsstatus"
)

type fakeTLS struct{}

func (fakeTLS) Domains() []tlsstatus.DomainPolicy {
	return []tlsstatus.DomainPolicy{{Domain: "example.com", Source: "sts", Mode: "enforce", MX: []string{"mx.example.com"}}}
}

func (fakeTLS) Hosts() []tlsstatus.HostOutcome {
	return []tlsstatus.HostOutcome{{Host: "mx.example.com", TLS: true, Version: "TLS1.3", Verified: true, Policy: "sts enforce"}}
}
