package reports

import (
	"crypto/rand"
	"errors"
	"fmt"
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

// NewVERP is the return-path signer of [bounce] domain, its key kept in kv
// (made on first use); nil when no bounce domain is set.
func NewVERP(cfg *config.Config, kv spool.KV) (*VERP, error) {
	if cfg.Bounce.Domain == "" {
		return nil, nil
	}
	key, err := VERPKey(kv)
	if err != nil {
		return nil, fmt.Errorf("VERP key: %w", err)
	}
	return &VERP{Domain: cfg.Bounce.Domain, Key: key}, nil
}

// ReturnPath is the MAIL FROM of a delivery of msg's recipients rcpts:
// VERP-encoded and bound to the first one's address when v is not nil
// (bounces are handled here), so a late bounce names message and
// recipient and may act on that address only; else the sender as it is.
func (v *VERP) ReturnPath(msg *spool.Message, rcpts []int) string {
	if v == nil || msg.Sender == "" || len(rcpts) == 0 {
		return msg.Sender
	}
	return v.Encode(msg.ID.String(), rcpts[0], msg.Recipients[rcpts[0]].Addr)
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
