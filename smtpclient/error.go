package smtpclient

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// TLSMode is how a connection uses STARTTLS (RFC 3207). It is set per MX rule.
type TLSMode int

const (
	// TLSDisabled never sends STARTTLS, even when offered.
	TLSDisabled TLSMode = iota
	// TLSOpportunistic uses STARTTLS when offered, without certificate
	// verification (RFC 7435: some protection beats none). A handshake failure
	// falls back to clear text on a new connection; see Client.TLSError.
	TLSOpportunistic
	// TLSRequired fails the connection when STARTTLS is not offered or its
	// handshake fails. The certificate is not verified.
	TLSRequired
	// TLSVerify is TLSRequired plus certificate verification against
	// Options.ServerName (PKIX), as an MTA-STS "enforce" policy asks (RFC 8461 §4.2).
	TLSVerify
)

var tlsModeNames = [...]string{"disabled", "opportunistic", "required", "verify"}

// String returns the config spelling of m.
func (m TLSMode) String() string {
	if m < 0 || int(m) >= len(tlsModeNames) {
		return "TLSMode(" + strconv.Itoa(int(m)) + ")"
	}
	return tlsModeNames[m]
}

// ParseTLSMode parses the config spelling: disabled, opportunistic, required or
// verify. "default" is not accepted here: the config package resolves it.
func ParseTLSMode(s string) (TLSMode, error) {
	for i, n := range tlsModeNames {
		if strings.EqualFold(s, n) {
			return TLSMode(i), nil
		}
	}
	return 0, fmt.Errorf("unknown tls mode %q: want disabled, opportunistic, required or verify", s)
}

// Sentinel causes found in Error.Err; test them with errors.Is.
var (
	// ErrBroken: the connection is unusable (earlier network error, 421,
	// protocol desync, cancellation or Close). Dial a new one.
	ErrBroken = errors.New("connection is broken")
	// ErrProtocol: the server sent something that is not an SMTP reply, or
	// sent bytes it must not have sent (e.g. data after the STARTTLS 220).
	ErrProtocol = errors.New("smtp protocol error")
	// ErrAddress: an address contains CR, LF or NUL, or a recipient is empty.
	// Sending it would let the address inject SMTP commands.
	ErrAddress = errors.New("invalid address")
	// ErrNoRecipients: Send was called without recipients.
	ErrNoRecipients = errors.New("no recipients")
	// ErrSMTPUTF8Unsupported: an address is not ASCII and the server does not
	// advertise SMTPUTF8 (RFC 6531 §3.4: do not send it).
	ErrSMTPUTF8Unsupported = errors.New("address needs SMTPUTF8, which the server does not offer")
	// ErrTooLarge: the message exceeds the server's advertised SIZE (RFC 1870 §6).
	ErrTooLarge = errors.New("message larger than the server's advertised SIZE")
	// ErrNoSTARTTLS: TLS is required and the server does not offer STARTTLS.
	ErrNoSTARTTLS = errors.New("server does not offer STARTTLS and the rule requires TLS")
	// ErrRequireTLS: the message asks for REQUIRETLS (RFC 8689) and this
	// connection cannot carry it: no TLS, a certificate not verified for the
	// MX host name, or a server that does not advertise REQUIRETLS.
	ErrRequireTLS = errors.New("REQUIRETLS support required")
)

// Error is every failure this package reports: a connection that could not be
// made, a reply that refused a command, or a local check that stopped a message.
//
// Permanent is true only for a 5xx reply and for local checks that can never
// succeed with this message (bad address, SMTPUTF8 not offered, too large);
// everything else, unknown causes included, is temporary and may be retried.
type Error struct {
	// Permanent: a 5xx reply, or a local check that no retry can fix.
	Permanent bool
	// Reply is the server's reply, zero when there was none.
	Reply Reply
	// Command is what failed: "connect", "greeting", "EHLO", "HELO",
	// "STARTTLS", "TLS" (opportunistic handshake, see Client.TLSError),
	// "MAIL", "RCPT", "DATA", "RSET" or "QUIT".
	Command string
	// Local is true for errors on our side or in the network (dial refused,
	// timeout, TLS handshake, bind failure, a local check); false when the
	// remote server caused it (a reply, a malformed reply, no STARTTLS).
	// Flow control uses it to tell our own trouble from a remote's verdict.
	Local bool
	// Err is the cause, nil for a plain reply.
	Err error
}

// Error reads as "RCPT: 550 5.1.1 no such user (permanent)".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Command)
	if e.Reply.Code != 0 {
		b.WriteString(": ")
		b.WriteString(e.Reply.String())
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	if e.Permanent {
		b.WriteString(" (permanent")
	} else {
		b.WriteString(" (temporary")
	}
	if e.Local {
		b.WriteString(", local")
	}
	b.WriteString(")")
	return b.String()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether a retry may succeed.
func (e *Error) Temporary() bool { return !e.Permanent }

// localErr is a temporary error on our side or the network's.
func localErr(cmd string, err error) *Error {
	return &Error{Command: cmd, Local: true, Err: err}
}

// permErr is a local check that rules the message out for good.
func permErr(cmd string, err error) *Error {
	return &Error{Command: cmd, Local: true, Permanent: true, Err: err}
}

// replyErr turns a refusing reply into an Error: 5xx is permanent, the rest
// (4xx, and anything unexpected) temporary.
func replyErr(cmd string, r Reply) *Error {
	return &Error{Command: cmd, Reply: r, Permanent: r.Code >= 500 && r.Code < 600}
}
