package smtpserver

import "sync/atomic"

// Reasons for a refusal, as counted in Stats.Rejected. They are meant as the
// values of a metric label (penstock_smtpserver_rejected_total{reason}), so
// the set is fixed and small.
const (
	ReasonTooManyConnections = "too_many_connections"            // 421 at connect: MaxConnections reached
	ReasonShuttingDown       = "shutting_down"                   // 421 at connect or MAIL during Shutdown
	ReasonRelayDenied        = "relay_denied"                    // 550 5.7.1 at MAIL: not allowed, not authenticated
	ReasonAuthFailed         = "auth_failed"                     // 535 5.7.8: bad user name or password
	ReasonBadSender          = "bad_sender"                      // 501 5.1.7 / 553 5.6.7 at MAIL
	ReasonBadRecipient       = "bad_recipient"                   // 501 5.1.3 / 553 5.6.7 at RCPT
	ReasonTooManyRecipients  = "too_many_recipients"             // 452 4.5.3 at RCPT
	ReasonBadSequence        = "bad_sequence"                    // 503 5.5.1: nested MAIL
	ReasonTooLarge           = "message_too_large"               // 552 5.3.4 at DATA
	ReasonLineTooLong        = "line_too_long"                   // 500 5.5.0 at DATA
	ReasonAcceptorRejected   = "acceptor_rejected"               // the Acceptor's own SMTP error
	ReasonTemporaryFailure   = "temporary_failure"               // 451 4.3.0: the Acceptor failed
	ReasonTooManyFromClient  = "too_many_connections_per_client" // 421 at connect: MaxConnectionsPerClient reached
	ReasonTooManyErrors      = "too_many_errors"                 // 421 4.7.0: MaxErrors error replies in one session
	ReasonAuthThrottled      = "auth_throttled"                  // 454 4.7.0 at AUTH: too many failures from the address
)

var reasons = [...]string{
	ReasonTooManyConnections, ReasonShuttingDown, ReasonRelayDenied,
	ReasonAuthFailed, ReasonBadSender, ReasonBadRecipient,
	ReasonTooManyRecipients, ReasonBadSequence, ReasonTooLarge,
	ReasonLineTooLong, ReasonAcceptorRejected, ReasonTemporaryFailure,
	ReasonTooManyFromClient, ReasonTooManyErrors, ReasonAuthThrottled,
}

// Stats is a snapshot of the server's counters. Counters only grow, from the
// server's start. Refusals go-smtp makes on its own (unknown commands, bad
// syntax, SIZE= over the limit at MAIL) are not counted.
type Stats struct {
	SessionsOpen  int               // connections being served now
	Sessions      uint64            // connections accepted (refused ones are not counted)
	Accepted      uint64            // messages acknowledged with 250
	AcceptedBytes uint64            // their size as stored, Received: header included
	Rejected      map[string]uint64 // refusals by reason; every Reason* key is present

	Stressed      bool   // stress mode is on now (see Config.StressIdleTimeout)
	StressEntered uint64 // times stress mode was entered
	AuthDelayed   uint64 // failed AUTH replies held back by the per-address throttle
	AuthThrottled int    // client addresses refused AUTH now, for a cool-down
}

type counters struct {
	sessions      atomic.Uint64
	accepted      atomic.Uint64
	acceptedBytes atomic.Uint64
	rejected      [len(reasons)]atomic.Uint64
	stressEntered atomic.Uint64
	authDelayed   atomic.Uint64
}

func (c *counters) reject(reason string) {
	for i, r := range reasons {
		if r == reason {
			c.rejected[i].Add(1)
			return
		}
	}
	panic("smtpserver: unknown rejection reason " + reason)
}

func (c *counters) snapshot(open int) Stats {
	st := Stats{
		SessionsOpen:  open,
		Sessions:      c.sessions.Load(),
		Accepted:      c.accepted.Load(),
		AcceptedBytes: c.acceptedBytes.Load(),
		Rejected:      make(map[string]uint64, len(reasons)),
		StressEntered: c.stressEntered.Load(),
		AuthDelayed:   c.authDelayed.Load(),
	}
	for i, r := range reasons {
		st.Rejected[r] = c.rejected[i].Load()
	}
	return st
}
