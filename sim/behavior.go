package sim

import (
	"crypto/tls"
	"fmt"
	"strings"
	"time"
)

// What a Provider does, as a test scripts it: Behavior, checked and
// compiled once into behavior.

// Stall and drop points of Behavior.StallAt and Behavior.DropAt.
const (
	AtGreeting = "greeting"
	AtMail     = "MAIL"
	AtRcpt     = "RCPT"
	AtData     = "DATA"
	AtDot      = "DOT"
)

// Behavior scripts how a Provider answers. The zero value is a well-behaved provider
// that accepts everything. Reply strings are single lines: a 3-digit code, a space,
// an enhanced status code (RFC 3463) and text, without CRLF.
type Behavior struct {
	// Name is the provider's host name in the greeting and EHLO reply ("sim" if empty).
	Name string
	// Greeting replaces "220 <Name> ESMTP sim". A greeting that does not start with
	// 2 (e.g. "421 4.7.0 Try later") is sent, then the connection is closed and
	// counted in Stats.RejectedConns.
	Greeting string
	// Refuse simulates an outage: the listeners are closed (connect gets "connection
	// refused") and open connections are dropped. Setting it back to false listens
	// again on the same addresses and ports.
	Refuse bool
	// STARTTLS offers STARTTLS (RFC 3207) with a self-signed certificate made at start.
	STARTTLS bool
	// Certificate, when set, is presented in the STARTTLS handshake instead of the
	// self-signed one (a leaf from a test CA, see NewCA), so clients that verify
	// certificates (MTA-STS, DANE, REQUIRETLS) can be tested.
	Certificate *tls.Certificate
	// BreakTLS answers STARTTLS with 220, then closes the connection instead of
	// the handshake: a broken TLS stack, as the client sees it.
	BreakTLS bool
	// REQUIRETLS advertises the REQUIRETLS extension (RFC 8689) after STARTTLS and
	// accepts its MAIL parameter there (counted in Stats.RequireTLSMail).
	REQUIRETLS bool
	// NoPipelining stops advertising PIPELINING and enforces it: a client that sends
	// a command before it has the reply to the previous one gets "554 5.5.0 Improper
	// use of SMTP command pipelining" and is disconnected. A BDAT chunk's octets
	// sent with its command are part of it, not a command sent early.
	NoPipelining bool
	// NoChunking stops advertising CHUNKING (RFC 3030): BDAT is then an unknown
	// command, and the octets a client sends after it are read as commands.
	NoChunking bool
	// RcptReply answers RCPT TO for a recipient address (without brackets). A nil
	// function or an empty result means "250 2.1.5 OK"; a 2xx result accepts the
	// recipient with that text; anything else rejects it; a 421 also closes.
	RcptReply func(rcpt string) string
	// DataReply answers the end of DATA and the LAST chunk of BDAT; n is the number of messages the provider
	// accepted before this one. An empty result means "250 2.0.0 OK queued as <id>";
	// a non-2xx result refuses the message (counted in Stats.DataRejected); a 421
	// also closes. Calls are serialised with acceptance, so n is exact.
	DataReply func(n int64) string
	// RateLimit > 0 lets at most RateLimit messages be accepted in any sliding
	// minute: once RateLimit messages were accepted in the last minute, MAIL and
	// RCPT get ThrottleReply. Transactions already past RCPT still complete, so
	// concurrent connections may overshoot by the transactions in flight.
	RateLimit int
	// RateWindow is the sliding window of RateLimit: default (and at most)
	// one minute; tests and the demo use shorter ones.
	RateWindow time.Duration
	// MailReply, when set, answers MAIL FROM from a client IP ("127.0.0.2")
	// before anything else looks at the transaction: an empty result goes
	// on as usual; anything else rejects the transaction with it (a 421
	// also closes). A provider that judges sources, as the big ones do,
	// throttles one client IP and not another this way.
	MailReply func(clientIP string) string
	// ThrottleReply defaults to "421 4.7.0 [TSS04] Messages from <client IP>
	// temporarily deferred due to unexpected volume"; a 421 closes the connection.
	ThrottleReply string
	// MaxMsgsPerConn > 0: after that many messages on a connection, the next MAIL
	// gets "421 4.7.0 Too many messages on this connection" and the connection closes.
	MaxMsgsPerConn int
	// MaxConnsPerIP > 0: a connection beyond this many admitted ones open from the
	// same client IP gets "421 4.7.0 Too many connections" instead of a greeting and
	// is closed (counted in Stats.RejectedConns).
	MaxConnsPerIP int
	// MaxSessions > 0: at most this many sessions are served at once, from all
	// clients; a connection beyond them is accepted and waits, without a
	// greeting, until one ends (counted in Stats.Waited). So behave Postfix's
	// smtp-sink at -m and a server whose processes are all busy: the client's
	// connect succeeds and nothing more happens.
	MaxSessions int
	// StallAt is one of AtGreeting, AtMail, AtRcpt, AtData, AtDot (case-insensitive)
	// or "": at that point the provider says nothing for StallFor, then goes on.
	// AtDot stalls after the message was read, before it is accepted and answered.
	// With BDAT, AtData is the first chunk of a message, before its octets are
	// read, and AtDot the end of the LAST chunk.
	StallAt  string
	StallFor time.Duration
	// DropAt takes the same points: the connection is closed there without a reply
	// (replies to earlier pipelined commands are sent first). At AtDot the message
	// is not accepted.
	DropAt string
	// BodyHook, if set, is called for each accepted message, before the reply is
	// sent and before WaitMessages waiters are woken. body is dot-unstuffed with CRLF
	// line ends after DATA, the chunks' octets as they came after BDAT, and belongs
	// to the hook. Calls may run concurrently.
	BodyHook func(from string, rcpts []string, body []byte)
}

// point is a compiled StallAt/DropAt.
type point uint8

const (
	atNone point = iota
	atGreeting
	atMail
	atRcpt
	atData
	atDot
)

func parsePoint(s string) (point, error) {
	switch strings.ToUpper(s) {
	case "":
		return atNone, nil
	case "GREETING":
		return atGreeting, nil
	case "MAIL":
		return atMail, nil
	case "RCPT":
		return atRcpt, nil
	case "DATA":
		return atData, nil
	case "DOT":
		return atDot, nil
	}
	return atNone, fmt.Errorf("sim: unknown point %q (want greeting, MAIL, RCPT, DATA or DOT)", s)
}

// behavior is a Behavior checked and compiled once, swapped atomically.
type behavior struct {
	Behavior
	host            string
	stallAt, dropAt point
}

func compile(b Behavior) (*behavior, error) {
	c := &behavior{Behavior: b, host: b.Name}
	if c.host == "" || strings.ContainsAny(c.host, " \t\r\n") {
		c.host = "sim"
	}
	var err error
	if c.stallAt, err = parsePoint(b.StallAt); err != nil {
		return nil, fmt.Errorf("StallAt: %w", err)
	}
	if c.dropAt, err = parsePoint(b.DropAt); err != nil {
		return nil, fmt.Errorf("DropAt: %w", err)
	}
	for _, r := range []struct{ name, v string }{{"Greeting", b.Greeting}, {"ThrottleReply", b.ThrottleReply}} {
		if r.v != "" && replyCode(r.v) == 0 {
			return nil, fmt.Errorf("sim: %s %q does not start with a 3-digit reply code", r.name, r.v)
		}
	}
	return c, nil
}
