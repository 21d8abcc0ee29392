package smtpserver

import (
	"crypto/tls"
	"fmt"
	"net/netip"
	"time"

	"github.com/penstock-mta/penstock/config"
)

// ConfigFrom is the injection listener's configuration from Penstock's
// [smtp] and [server] sections, its certificate loaded.
func ConfigFrom(cfg *config.Config) (Config, error) {
	var nets []netip.Prefix
	for _, s := range cfg.SMTP.AllowedNetworks {
		p, err := config.ParsePrefix(s)
		if err != nil {
			return Config{}, fmt.Errorf("[smtp] allowed_networks: %w", err)
		}
		nets = append(nets, p)
	}
	sc := Config{
		Listen:          cfg.SMTP.Listen,
		Hostname:        cfg.Server.Hostname,
		AllowedNetworks: nets,
		Users:           cfg.SMTP.Users,
		MaxMessageSize:  cfg.SMTP.MaxMessageSize,
		MaxRecipients:   cfg.SMTP.MaxRecipients,
		MaxConnections:  cfg.SMTP.MaxConnections,

		MaxConnectionsPerClient: cfg.SMTP.MaxConnectionsPerClient,
		ReservedConnections:     int(cfg.SMTP.ReservedConnectionsRatio * float64(cfg.SMTP.MaxConnections)),
		ReadTimeout:             time.Duration(cfg.SMTP.IdleTimeout),
		StressIdleTimeout:       time.Duration(cfg.SMTP.StressIdleTimeout),
		MaxErrors:               cfg.SMTP.MaxErrors,
	}
	if sc.ReservedConnections == 0 {
		sc.ReservedConnections = -1 // smtpserver reads 0 as "its default"
	}
	if cfg.SMTP.TLSCert != "" {
		tc, err := loadTLS(cfg.SMTP.TLSCert, cfg.SMTP.TLSKey)
		if err != nil {
			return Config{}, err
		}
		sc.TLSConfig = tc
	}
	return sc, nil
}

func loadTLS(cert, key string) (*tls.Config, error) {
	c, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("[smtp] tls_cert/tls_key: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12}, nil
}
