package mta

import (
	"fmt"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/mtasts"
	"github.com/penstock-mta/penstock/tlspolicy"
)

// tlsPolicies builds the provider of the domains' transport security
// policies ([mta_sts], [dane]); nil when every policy source is off. It is
// built once at start: changing these keys needs a restart.
func (m *MTA) tlsPolicies(cfg *config.Config) (tlspolicy.Provider, error) {
	if !cfg.MTASTS.Enabled {
		return nil, nil
	}
	r, err := mtasts.New(mtasts.Options{
		DNS: m.Resolver, KV: m.Spool.KV(mtasts.Bucket), Port: m.opts.MTASTSPort,
		Reporter: m.opts.TLSReport, Logger: m.opts.Logger, Now: m.opts.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("[mta_sts]: %w", err)
	}
	return r, nil
}
