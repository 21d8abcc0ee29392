package smtpserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Replies of our own. Texts are for people: they say what was wrong and, where
// it helps, what to do.
var (
	errRelayDenied   = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "relaying denied"}
	errTooManyRcpts  = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}, Message: "Too many recipients"} // RFC 5321 §4.5.3.1.10
	errTooLarge      = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "Message size exceeds fixed maximum message size"}
	errTempLocal     = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporary local problem, try again later"}
	errNestedMail    = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Nested MAIL command: finish the transaction or send RSET first"}
	errNoMail        = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "Send MAIL FROM first"}
	errNoRcpts       = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "No valid recipients"} // RFC 5321 §3.3
	errShuttingDown  = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Service shutting down, try again later"}
	errTooManyErrors = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many errors"}
	errAuthTooMany   = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many failed authentication attempts, closing connection"}
	errBodyLineLimit = &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 0}, Message: "Message has a line longer than SMTP allows (RFC 5321 section 4.5.3.1.6): encode the body as quoted-printable or base64"}
)

// maxPooledBuf keeps one large message from pinning its buffer in the pool.
const maxPooledBuf = 256 << 10

// receivedRoom is kept free ahead of the message in the DATA buffer for the
// Received field; a longer field (a HELO name or recipient address near
// their limits) takes the copying path.
var receivedRoom [1024]byte

// session is one go-smtp session: from EHLO to QUIT, or to STARTTLS, after
// which go-smtp starts a new one. Methods run on the connection's goroutine,
// except Data for a message in more than one BDAT chunk: go-smtp runs that on
// a goroutine of its own, and Reset or Logout can come while it runs, hence
// mu. (A message in one chunk, BDAT LAST, is read on the connection's
// goroutine, as DATA is.)
type session struct {
	srv          *Server
	c            *smtp.Conn
	conn         *trackedConn
	tls          bool
	authOffered  bool       // TLS or loopback, and users are configured
	allowedRelay bool       // the client's IP is in AllowedNetworks
	key          netip.Addr // clientKey of the client's IP, for the AUTH throttle

	mu        sync.Mutex
	user      string
	authFails int
	inTx      bool
	txN       int
	helo      string
	from      string
	smtputf8  bool
	body8     bool
	nrcpt     int // accepted RCPT commands, duplicates included: the limit counts commands
	rcpts     []string
	seen      map[string]struct{} // built once rcpts is long enough for a scan to cost

	requireTLS bool // MAIL FROM had REQUIRETLS (RFC 8689)
}

// errRequireTLSClear: REQUIRETLS is only offered, hence only taken, over TLS
// (RFC 8689 §4.1).
var errRequireTLSClear = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 10},
	Message: "REQUIRETLS needs a TLS session: send STARTTLS first"}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	tc := trackedOf(c.Conn())
	if tc == nil {
		return nil, errors.New("internal error: connection not tracked")
	}
	tc.setReplyTo(c.Conn())
	_, isTLS := c.TLSConnectionState()
	ip := tc.remote.Addr()
	return &session{
		srv:          s,
		c:            c,
		conn:         tc,
		tls:          isTLS,
		authOffered:  len(s.cfg.Users) > 0 && authOfferedTo(ip, isTLS),
		allowedRelay: ip.IsValid() && s.relayAllowed(ip),
		key:          clientKey(ip),
	}, nil
}

// fail counts err toward Config.MaxErrors in a TLS session, where the
// connection sees only ciphertext and cannot count the replies itself (in
// clear text it does, trackedConn.Write). Replies go-smtp writes on its own
// (syntax errors, bad sequence) are not seen here; go-smtp's own limit of
// three unrecognised commands still applies to them.
func (s *session) fail(err error) error {
	if err == nil || !s.tls {
		return err // declared below, se is allocated only on this path
	}
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		return err
	}
	if countsAsError(se.Code, se.EnhancedCode[1], se.EnhancedCode[2]) && s.conn.addErrors(1) {
		s.conn.errLimit.Store(true)
	}
	return err
}

// overLimit closes a TLS session that has had its last error reply: the
// reply to the command that reached the limit is written by now, as go-smtp
// moved on to the next (pipelined) command. trackedConn.Read does the same
// when the client waited for that reply.
func (s *session) overLimit() error {
	if !s.conn.errLimit.Load() {
		return nil
	}
	s.conn.closeWith(replyTooManyErrors)
	return errTooManyErrors
}

// authOfferedTo says whether AUTH may be offered: only where the password
// cannot be sniffed, over TLS or from the machine itself.
func authOfferedTo(ip netip.Addr, isTLS bool) bool { return isTLS || ip.IsLoopback() }

func (s *session) relayOK() bool { return s.allowedRelay || s.user != "" }

func (s *session) logAttrs() []any {
	return []any{"conn", s.conn.id, "remote", s.conn.remote.String()}
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if err := s.overLimit(); err != nil {
		return err
	}
	return s.fail(s.mail(from, opts))
}

func (s *session) mail(from string, opts *smtp.MailOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inTx {
		// go-smtp lets a second MAIL through; RFC 5321 §4.1.4 wants 503.
		s.srv.stats.reject(ReasonBadSequence)
		return errNestedMail
	}
	if !s.relayOK() {
		// docs/ARCHITECTURE.md §5, invariant 4: every Penstock transaction relays, so refuse at MAIL.
		s.srv.stats.reject(ReasonRelayDenied)
		s.srv.log.Info("relaying denied", append(s.logAttrs(), "helo", s.c.Hostname(), "from", from)...)
		return errRelayDenied
	}
	if opts.RequireTLS && !s.tls {
		s.srv.stats.reject(ReasonBadSender)
		return errRequireTLSClear
	}
	if from != "" {
		addr, err := checkMailbox(from, opts.UTF8)
		if err != nil {
			s.srv.stats.reject(ReasonBadSender)
			return addressError(err, "sender", smtp.EnhancedCode{5, 1, 7})
		}
		from = addr
	}
	n, ok := s.conn.beginTx()
	if !ok {
		if s.srv.draining.Load() {
			s.srv.stats.reject(ReasonShuttingDown)
		}
		return errShuttingDown
	}
	s.inTx, s.txN, s.from = true, n, from
	s.helo = strings.Map(func(r rune) rune {
		// go-smtp passes the EHLO argument through unchecked.
		if r < 0x20 || r == 0x7f {
			return '_'
		}
		return r
	}, s.c.Hostname())
	s.smtputf8 = opts.UTF8
	s.body8 = opts.Body == smtp.Body8BitMIME
	s.requireTLS = opts.RequireTLS
	return nil
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if err := s.overLimit(); err != nil {
		return err
	}
	return s.fail(s.rcpt(to, opts))
}

func (s *session) rcpt(to string, _ *smtp.RcptOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !s.inTx:
		return errNoMail
	case !s.relayOK():
		s.srv.stats.reject(ReasonRelayDenied)
		return errRelayDenied
	case s.nrcpt >= s.srv.cfg.MaxRecipients:
		s.srv.stats.reject(ReasonTooManyRecipients)
		return errTooManyRcpts
	}
	addr, err := checkMailbox(to, s.smtputf8)
	if err != nil {
		s.srv.stats.reject(ReasonBadRecipient)
		return addressError(err, "recipient", smtp.EnhancedCode{5, 1, 3})
	}
	s.nrcpt++
	s.addRcpt(addr)
	return nil
}

// addRcpt adds addr unless the envelope has it already: one delivery per
// address is what the sender means (RFC 5321 §3.3 lets the server merge).
func (s *session) addRcpt(addr string) {
	const scanMax = 16
	if s.seen == nil && len(s.rcpts) >= scanMax {
		s.seen = make(map[string]struct{}, 2*len(s.rcpts))
		for _, r := range s.rcpts {
			s.seen[r] = struct{}{}
		}
	}
	if s.seen != nil {
		if _, dup := s.seen[addr]; dup {
			return
		}
		s.seen[addr] = struct{}{}
	} else {
		for _, r := range s.rcpts {
			if r == addr {
				return
			}
		}
	}
	s.rcpts = append(s.rcpts, addr)
}

func addressError(err error, role string, code smtp.EnhancedCode) error {
	if errors.Is(err, errNeedsUTF8) {
		// RFC 6531 §3.7.4.1 with RFC 6533's 5.6.7.
		return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7},
			Message: "Non-ASCII " + role + " address needs SMTPUTF8: add SMTPUTF8 to MAIL FROM"}
	}
	return &smtp.SMTPError{Code: 501, EnhancedCode: code, Message: "Bad " + role + " address syntax: " + err.Error()}
}

// Data reads the whole message, shapes it and hands it to the Acceptor. Its
// return value becomes the reply; go-smtp writes it only after Data returns,
// which is what makes the 250 follow durability.
func (s *session) Data(r io.Reader) error {
	if err := s.overLimit(); err != nil {
		return err
	}
	return s.fail(s.data(r))
}

func (s *session) data(r io.Reader) error {
	buf := s.srv.bufs.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= maxPooledBuf {
			s.srv.bufs.Put(buf)
		}
	}()
	// Room for the Received field ahead of the message: a body with CRLF
	// lines for a BodyBorrower is then the buffer itself, field included.
	buf.Write(receivedRoom[:])
	if _, err := buf.ReadFrom(r); err != nil {
		return s.dataReadError(err)
	}
	env, trace, err := s.envelope()
	if err != nil {
		return err
	}
	all := buf.Bytes()
	raw := all[len(receivedRoom):]
	env.Body8Bit = env.Body8Bit || has8Bit(raw)
	crlf, longest := scanLines(raw)
	if s.srv.maxLine > 0 && longest > s.srv.maxLine {
		s.srv.stats.reject(ReasonLineTooLong)
		return errBodyLineLimit
	}
	if s.srv.borrows && crlf {
		// The field is built in the buffer's spare capacity, then moved
		// in front of the message.
		field := appendReceived(all[len(all):len(all)], trace)
		if start := len(receivedRoom) - len(field); start >= 0 {
			copy(all[start:], field)
			return s.srv.accept(env, all[start:], trace.id, s.logAttrs)
		}
	}
	body := make([]byte, 0, len(raw)+len(raw)/32+512)
	body = appendReceived(body, trace)
	body = appendCRLF(body, raw, crlf)
	return s.srv.accept(env, body, trace.id, s.logAttrs)
}

func (s *session) dataReadError(err error) error {
	switch {
	case errors.Is(err, smtp.ErrDataTooLarge):
		// go-smtp's own text differs; RFC 5321 §4.5.3.1.10 gives ours.
		s.srv.stats.reject(ReasonTooLarge)
		return errTooLarge
	case errors.Is(err, smtp.ErrTooLongLine):
		s.srv.stats.reject(ReasonLineTooLong)
		return errBodyLineLimit
	}
	s.srv.log.Debug("message transfer aborted", append(s.logAttrs(), "err", err)...)
	return err
}

// envelope takes the transaction's envelope and trace data.
func (s *session) envelope() (*Envelope, traceInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !s.inTx || len(s.rcpts) == 0:
		// go-smtp answers DATA without recipients itself; this is a backstop.
		return nil, traceInfo{}, errNoRcpts
	case !s.relayOK():
		return nil, traceInfo{}, errRelayDenied
	}
	env := &Envelope{
		From:     s.from,
		To:       s.rcpts,
		Remote:   s.conn.remote,
		Helo:     s.helo,
		User:     s.user,
		SMTPUTF8: s.smtputf8,
		Body8Bit: s.body8,

		RequireTLS: s.requireTLS,
	}
	s.rcpts, s.seen = nil, nil // env owns the slice now
	return env, traceInfo{
		helo:     s.helo,
		remote:   s.conn.remote.Addr(),
		hostname: s.srv.cfg.Hostname,
		tls:      s.tls,
		auth:     s.user != "",
		smtputf8: s.smtputf8,
		id:       s.conn.id + "-" + strconv.Itoa(s.txN),
		rcpts:    env.To,
		now:      time.Now(),
	}, nil
}

// Reset ends the transaction. go-smtp calls it for RSET and EHLO, and after
// writing the DATA reply, which is when a draining server closes the session.
func (s *session) Reset() {
	s.mu.Lock()
	s.clearTx()
	s.mu.Unlock()
	s.conn.endTx()
}

func (s *session) clearTx() {
	s.inTx, s.from, s.helo = false, "", ""
	s.smtputf8, s.body8, s.requireTLS = false, false, false
	s.nrcpt, s.rcpts, s.seen = 0, nil, nil
}

// Logout is called when the connection ends and on STARTTLS, where the
// session's plain-text connection is replaced.
func (s *session) Logout() error {
	s.mu.Lock()
	s.clearTx()
	s.mu.Unlock()
	s.conn.detach()
	return nil
}

// AuthMechanisms implements smtp.AuthSession; see authOfferedTo.
func (s *session) AuthMechanisms() []string {
	if !s.authOffered {
		return nil
	}
	return []string{sasl.Plain, "LOGIN"}
}

// Auth implements smtp.AuthSession.
func (s *session) Auth(mech string) (sasl.Server, error) {
	switch {
	case len(s.srv.cfg.Users) == 0:
		return nil, smtp.ErrAuthUnsupported
	case !s.authOffered:
		return nil, s.fail(errAuthNeedsTLS)
	}
	if err := s.overLimit(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	fails := s.authFails
	s.mu.Unlock()
	if fails >= maxAuthFailures {
		s.conn.closeWith(fmt.Sprintf("%d %d.%d.%d %s\r\n", errAuthTooMany.Code, errAuthTooMany.EnhancedCode[0],
			errAuthTooMany.EnhancedCode[1], errAuthTooMany.EnhancedCode[2], errAuthTooMany.Message))
		return nil, errAuthTooMany
	}
	if until, ok := s.srv.authFail.check(s.key); !ok {
		s.srv.stats.reject(ReasonAuthThrottled)
		s.srv.log.Info("AUTH refused: too many failures from this address", s.logAttrs()...)
		// RFC 4954 §6: 454 4.7.0 is a temporary authentication failure.
		wait := max(until.Sub(s.srv.cfg.Clock.Now()).Round(time.Minute), time.Minute)
		return nil, s.fail(&smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
			Message: fmt.Sprintf("Too many failed authentication attempts from your address, try again in %d minutes", int(wait/time.Minute))})
	}
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		return &plainServer{check: s.authenticate}, nil
	case "LOGIN":
		return &loginServer{check: s.authenticate}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (s *session) authenticate(user, pass string) error {
	if checkPassword(s.srv.cfg.Users, user, pass) {
		s.mu.Lock()
		s.user = user
		s.mu.Unlock()
		s.srv.log.Debug("authenticated", append(s.logAttrs(), "user", user)...)
		return nil
	}
	s.mu.Lock()
	s.authFails++
	s.mu.Unlock()
	s.srv.stats.reject(ReasonAuthFailed)
	s.srv.log.Info("authentication failed", append(s.logAttrs(), "user", user)...)
	if d := s.srv.authFail.failed(s.key); d > 0 {
		// Holding the reply back slows a guesser down whatever number of
		// sessions it runs; the wait ends early if the connection closes.
		s.srv.stats.authDelayed.Add(1)
		select {
		case <-s.srv.cfg.Clock.After(d):
		case <-s.conn.closed:
		}
	}
	return s.fail(smtp.ErrAuthFailed)
}

// accept calls the Acceptor and turns its answer into the DATA reply. attrs
// gives the session's log attributes; it is called only to log, as the
// common case (accepted, debug logging off) logs nothing.
func (s *Server) accept(env *Envelope, body []byte, traceID string, attrs func() []any) error {
	id, err := s.callAcceptor(env, body)
	if err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code >= 400 && se.Code < 600 {
			s.stats.reject(ReasonAcceptorRejected)
			s.log.Debug("message refused by the spool", append(attrs(), "trace_id", traceID, "code", se.Code, "reply", se.Message)...)
			return se
		}
		s.stats.reject(ReasonTemporaryFailure)
		s.log.Warn("message not stored; client told to retry", append(attrs(), "trace_id", traceID, "err", err)...)
		return errTempLocal
	}
	s.stats.accepted.Add(1)
	s.stats.acceptedBytes.Add(uint64(len(body)))
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("message accepted", append(attrs(), "trace_id", traceID, "id", id, "rcpts", len(env.To), "size", len(body))...)
	}
	// go-smtp writes any *SMTPError returned by Data as the reply, 2xx
	// included; that is the only way to put the queue id in the 250.
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: "OK queued as " + replySafe(id)}
}

// callAcceptor brackets the Acceptor call for Shutdown, which waits for it;
// deferred, because go-smtp recovers a panicking session and carries on.
func (s *Server) callAcceptor(env *Envelope, body []byte) (string, error) {
	s.acceptStart()
	defer s.acceptDone()
	return s.acc.Accept(s.acceptCtx, env, body)
}

// replySafe keeps an id from breaking the reply line.
func replySafe(id string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x21 || r > 0x7e {
			return -1
		}
		return r
	}, id)
}
