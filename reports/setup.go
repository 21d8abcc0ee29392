package reports

import (
	"crypto/rand"
	"errors"
	"net/netip"
	"path/filepath"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/smtpserver"
	"github.com/penstock-mta/penstock/spool"
)

// VERPKey is the secret that signs VERP return paths: made once and kept
// in kv, so that return paths stay valid across restarts.
func VERPKey(kv spool.KV) ([]byte, error) {
	k, err := kv.Get("verp-key")
	if err == nil && len(k) >= 16 {
		return k, nil
	}
	if err != nil && !errors.Is(err, spool.ErrNotFound) {
		return nil, err
	}
	k = make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	return k, kv.Put("verp-key", k)
}

// ConfigFrom is the intake's configuration from [bounce]; verp signs the
// return paths (nil: every report is refused).
func ConfigFrom(cfg *config.Config, verp *VERP) Config {
	b := cfg.Bounce
	nets, domains := b.Trusted()
	return Config{VERP: verp, TrustedNets: nets, TrustedDomains: domains,
		MaxReportSize: b.MaxReportSize, PerMinute: b.ReportsPerMinute, Dir: filepath.Join(cfg.Server.LogDir, "unparsed-reports"),
		MaxBytes: b.UnparsedMaxBytes, MaxFiles: b.UnparsedMaxFiles, MinFree: b.UnparsedMinFree}
}

// ServerConfig is the bounce listener's: it takes reports from anyone (the
// intake decides what each may do), small and few recipients.
func ServerConfig(cfg *config.Config) smtpserver.Config {
	any4, any6 := netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")
	return smtpserver.Config{Listen: cfg.Bounce.Listen, Hostname: cfg.Server.Hostname,
		AllowedNetworks: []netip.Prefix{any4, any6}, MaxMessageSize: cfg.Bounce.MaxReportSize, MaxRecipients: 10, MaxConnections: 200}
}
