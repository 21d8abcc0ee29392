package mta

import (
	"github.com/penstock-mta/penstock/outcome"
	"github.com/penstock-mta/penstock/smtpserver"
	"github.com/penstock-mta/penstock/spool"
)

func acceptFlags(env *smtpserver.Envelope) uint8 {
	f := outcome.FlagDSN
	if env.RequireTLS {
		f |= outcome.FlagRequireTLS
	}
	return f
}

func requiresTLS(m *spool.Message) bool { return m.Flags&outcome.FlagRequireTLS != 0 }
