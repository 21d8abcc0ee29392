package queue

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/penstock-mta/penstock/caps"
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/tenants"
)

// ConfigFrom is the queue's configuration from Penstock's: the rule set,
// the caps, the tenants' limits, the retry schedule, and the pools with
// their sources. With sources but
// no pool named as the default, the default pool is every source at equal
// weight.
func ConfigFrom(cfg *config.Config) (*Config, error) {
	rules, err := cfg.RuleSet()
	if err != nil {
		return nil, err
	}
	capSet, err := caps.FromConfig(cfg)
	if err != nil {
		return nil, err
	}
	qc := &Config{
		Rules:       rules,
		Caps:        capSet,
		Port:        cfg.Delivery.Port,
		TLSDefault:  cfg.Server.TLS,
		Hostname:    cfg.Server.Hostname,
		DefaultPool: cfg.Delivery.DefaultPool,
		Pools:       map[string][]Source{},

		TLSFailureMemory: time.Duration(cfg.Delivery.TLSFailureMemory),
	}
	for _, d := range cfg.Delivery.Retry {
		qc.Retry = append(qc.Retry, time.Duration(d))
	}
	qc.Tenants = tenants.Set{}
	for _, t := range cfg.Tenants {
		qc.Tenants[t.Name] = tenants.NewLimit(t.Name, t.MessagesPerHour, t.Weight)
	}
	sources := map[string]Source{}
	for _, s := range cfg.Sources {
		ip, err := netip.ParseAddr(s.IP)
		if err != nil {
			return nil, fmt.Errorf("[[source]] %q: ip: %w", s.Name, err)
		}
		ehlo := s.EHLO
		if ehlo == "" {
			ehlo = cfg.Server.Hostname
		}
		sources[s.Name] = Source{Name: s.Name, IP: ip, EHLO: ehlo, Weight: 1}
	}
	for _, p := range cfg.Pools {
		for _, ps := range p.Sources {
			src, ok := sources[ps.Source]
			if !ok {
				return nil, fmt.Errorf("[[pool]] %q: unknown source %q", p.Name, ps.Source)
			}
			src.Weight = max(1, ps.Weight)
			qc.Pools[p.Name] = append(qc.Pools[p.Name], src)
		}
	}
	if qc.DefaultPool == "" {
		qc.DefaultPool = "default"
	}
	if _, ok := qc.Pools[qc.DefaultPool]; !ok && len(cfg.Sources) > 0 {
		for _, s := range cfg.Sources {
			qc.Pools[qc.DefaultPool] = append(qc.Pools[qc.DefaultPool], sources[s.Name])
		}
	}
	return qc, nil
}
