package mta

import (
	"github.com/penstock-mta/penstock/smtpserver"
	"github.com/penstock-mta/penstock/spool"
)

// flagRequireTLS on a spooled message: it came with REQUIRETLS (RFC 8689)
// and leaves only over TLS verified for the MX host name, to a server that
// advertises REQUIRETLS (the queue bounces it with 5.7.10 otherwise). Until
// MTA-STS and DANE are in, "verified" means the certificate chains to a
// trusted root and names the MX host.
const flagRequireTLS = 2

func acceptFlags(env *smtpserver.Envelope) uint8 {
	f := uint8(flagDSN)
	if env.RequireTLS {
		f |= flagRequireTLS
	}
	return f
}

func requiresTLS(m *spool.Message) bool { return m.Flags&flagRequireTLS != 0 }
