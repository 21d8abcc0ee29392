package mta

import (
	"fmt"
	"io"
	"time"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/dane"
	"github.com/penstock-mta/penstock/dns"
	"github.com/penstock-mta/penstock/mtasts"
	"github.com/penstock-mta/penstock/tlspolicy"
)

// tlsPolicies builds the provider of the domains' transport security
// policies ([mta_sts], [dane]): DANE first, as it takes precedence when
// usable (RFC 8461 §2), then MTA-STS; nil when both are off. DANE needs
// [dns] dnssec: the AD bit is trusted only from resolvers the operator
// declared validating. Built once at start: these keys need a restart.
func (m *MTA) tlsPolicies(cfg *config.Config) (tlspolicy.Provider, error) {
	var p tlspolicy.Provider
	if cfg.MTASTS.Enabled {
		r, err := mtasts.New(mtasts.Options{
			DNS: m.Resolver, KV: m.Spool.KV(mtasts.Bucket), Port: m.opts.MTASTSPort,
			Reporter: m.tlsReport(), Logger: m.opts.Logger, Now: m.opts.Now,
		})
		if err != nil {
			return nil, fmt.Errorf("[mta_sts]: %w", err)
		}
		p = r
	}
	if cfg.DANE.Enabled && cfg.DNS.DNSSEC {
		tr, err := dns.NewTLSA(cfg.DNS.Nameservers, time.Duration(cfg.DNS.Timeout))
		if err != nil {
			return nil, fmt.Errorf("[dane]: %w", err)
		}
		// Cached per MX host for the answers' TTL, like MX answers.
		tc := dns.NewTLSACache(tr, 10000, m.opts.Now)
		m.resolvers = append(m.resolvers, tc.(io.Closer))
		p = &dane.Provider{MX: m.Resolver, TLSA: tc, Next: p, Now: m.opts.Now}
	}
	return p, nil
}
