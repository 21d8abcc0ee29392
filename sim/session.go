package sim

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"strconv"
	"time"
)

// One SMTP session of a Provider: the server side of RFC 5321, with the
// replies, stalls and drops its Behavior scripts.

const (
	// maxLineLen bounds a command or text line, CRLF excluded. RFC 5321 §4.5.3.1.6
	// asks for 1000 octets at least; we are generous, but bounded, so a hostile
	// client cannot make us buffer without end.
	maxLineLen = 4096
	// maxMessageSize is advertised with SIZE (RFC 1870) and enforced at DATA
	// and BDAT.
	maxMessageSize = 50 << 20
	// maxChunkDiscard bounds the octets of one refused BDAT chunk we read to
	// stay in step with the client; a larger one closes the connection.
	maxChunkDiscard = 2 * maxMessageSize
	// maxRecipients per transaction; RFC 5321 §4.5.3.1.8 asks for at least 100.
	maxRecipients = 1000
	// maxErrors: after this many bad commands on one connection we hang up.
	maxErrors = 20
	// idleTimeout bounds every read and write on a connection.
	idleTimeout = 60 * time.Second
	// maxTimes caps Arrivals, AttemptTimes, ConnTimes and the distinct keys of RcptSeen.
	maxTimes = 2_000_000
	// rateWindow is the sliding window of Behavior.RateLimit.
	rateWindow = time.Minute

	readBufSize  = 16 << 10
	writeBufSize = 4 << 10
	// maxDiscard bounds how much of an overlong command line we skip before
	// giving up on the connection.
	maxDiscard = 1 << 20
)

var (
	errLineTooLong = errors.New("line too long")
	errDiscard     = errors.New("overlong line without end")
)

type session struct {
	p        *Provider
	raw      net.Conn
	r        *bufio.Reader
	w        *bufio.Writer
	ip, path string
	admitted bool
	tls      bool
	helo     bool
	inTx     bool
	from     string
	rcpts    []string
	rcptSeen bool  // a RCPT was tried in this transaction
	chunking bool  // the transaction's message is arriving in BDAT chunks
	chunked  int64 // octets of those chunks received so far
	msgs     int   // messages delivered on this connection
	errs     int
	body     []byte
}

func (s *session) reply(r string) {
	s.w.WriteString(r)
	s.w.WriteString("\r\n")
}

// flushIfIdle flushes queued replies when no complete command is waiting: the
// server side of RFC 2920 §3.1, which lets a pipelining client get all the replies
// to a command group in one write, and never leaves a client waiting on us.
func (s *session) flushIfIdle() error {
	if s.w.Buffered() == 0 {
		return nil
	}
	if n := s.r.Buffered(); n > 0 {
		if b, _ := s.r.Peek(n); bytes.IndexByte(b, '\n') >= 0 {
			return nil
		}
	}
	return s.w.Flush()
}

// readLine returns the next line, CRLF included, valid until the next read.
func (s *session) readLine() ([]byte, error) {
	if err := s.flushIfIdle(); err != nil {
		return nil, err
	}
	line, err := s.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		for skipped := len(line); err == bufio.ErrBufferFull; skipped += len(line) {
			if skipped > maxDiscard {
				return nil, errDiscard
			}
			line, err = s.r.ReadSlice('\n')
		}
		if err != nil {
			return nil, err
		}
		return nil, errLineTooLong
	}
	if err != nil {
		return nil, err
	}
	if len(line) > maxLineLen+2 {
		return nil, errLineTooLong
	}
	return line, nil
}

// stall says nothing for b.StallFor; false if the provider closed meanwhile.
func (s *session) stall(b *behavior) bool {
	if s.w.Flush() != nil {
		return false
	}
	t := time.NewTimer(b.StallFor)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.p.done:
		return false
	}
}

// at runs the stall and drop of point pt; false means end the connection now.
func (s *session) at(b *behavior, pt point) bool {
	if b.stallAt == pt && !s.stall(b) {
		return false
	}
	if b.dropAt == pt {
		s.w.Flush() // replies to earlier commands go out; this one gets none
		return false
	}
	return true
}

func (s *session) serve() {
	b := s.p.beh.Load()
	if !s.p.admit(s, b.MaxConnsPerIP) {
		s.reply("421 4.7.0 Too many connections")
		s.w.Flush()
		return
	}
	if !s.at(b, atGreeting) {
		return
	}
	b = s.p.beh.Load()
	switch {
	case b.Greeting == "":
		s.w.WriteString("220 ")
		s.w.WriteString(b.host)
		s.w.WriteString(" ESMTP sim\r\n")
	case b.Greeting[0] != '2':
		// RFC 5321 §3.1: a server may refuse at greeting; we then hang up at once.
		s.p.countRejectedConn()
		s.reply(b.Greeting)
		s.w.Flush()
		return
	default:
		s.reply(b.Greeting)
	}
	for {
		line, err := s.readLine()
		if err == errLineTooLong {
			if !s.bad("500 5.5.2 Line too long") {
				break
			}
			continue
		}
		if err != nil {
			return
		}
		if !s.command(line) {
			break
		}
	}
	s.w.Flush()
}

// bad answers a client error and counts it; false once the client made too many.
func (s *session) bad(r string) bool {
	s.reply(r)
	s.errs++
	if s.errs >= maxErrors {
		s.reply("421 4.7.0 Too many errors, closing connection")
		return false
	}
	return true
}

func (s *session) resetTx() {
	s.inTx = false
	s.from = ""
	clear(s.rcpts)
	s.rcpts = s.rcpts[:0]
	s.rcptSeen = false
	s.chunking = false
	s.chunked = 0
}

// command handles one command line; false means close the connection (after
// flushing what was queued).
func (s *session) command(line []byte) bool {
	line = bytes.TrimRight(line, "\r\n")
	verb, arg := line, []byte(nil)
	if i := bytes.IndexByte(line, ' '); i >= 0 {
		verb, arg = line[:i], line[i+1:]
	}
	b := s.p.beh.Load()
	if isVerb(verb, "BDAT") && !b.NoChunking {
		// The chunk's octets follow the command line at once (RFC 3030 §2):
		// bdat judges pipelining after it has read them.
		return s.bdat(b, arg)
	}
	if s.pipelined(b) {
		return false
	}
	switch {
	case isVerb(verb, "EHLO"), isVerb(verb, "HELO"):
		return s.hello(b, isVerb(verb, "EHLO"), arg)
	case isVerb(verb, "MAIL"):
		return s.mail(b, arg)
	case isVerb(verb, "RCPT"):
		return s.rcpt(b, arg)
	case isVerb(verb, "DATA"):
		return s.data(b, arg)
	case isVerb(verb, "RSET"):
		s.resetTx()
		s.reply("250 2.0.0 OK")
	case isVerb(verb, "NOOP"):
		s.reply("250 2.0.0 OK")
	case isVerb(verb, "QUIT"):
		s.reply("221 2.0.0 Bye")
		return false
	case isVerb(verb, "VRFY"):
		s.reply("252 2.5.0 Cannot VRFY user, but will accept message")
	case isVerb(verb, "HELP"):
		s.reply("214 2.0.0 See RFC 5321")
	case isVerb(verb, "STARTTLS"):
		return s.startTLS(b, arg)
	default:
		return s.bad("500 5.5.2 Command not recognized")
	}
	return true
}

// pipelined answers a client that sent more before it had our reply though
// PIPELINING is not offered (b.NoPipelining); true means it did, and the
// connection is to close.
func (s *session) pipelined(b *behavior) bool {
	if !b.NoPipelining || s.r.Buffered() == 0 {
		return false
	}
	s.reply("554 5.5.0 Improper use of SMTP command pipelining")
	return true
}

// isVerb reports whether v equals want (upper case) ignoring ASCII case, without
// allocating.
func isVerb(v []byte, want string) bool {
	if len(v) != len(want) {
		return false
	}
	for i := range len(v) {
		c := v[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}

func (s *session) hello(b *behavior, ehlo bool, arg []byte) bool {
	if len(bytes.TrimSpace(arg)) == 0 {
		return s.bad("501 5.5.4 Syntax: EHLO/HELO domain")
	}
	// RFC 5321 §4.1.4: EHLO/HELO also resets any transaction.
	s.resetTx()
	s.helo = true
	if !ehlo {
		s.w.WriteString("250 ")
		s.w.WriteString(b.host)
		s.w.WriteString("\r\n")
		return true
	}
	// RFC 2034 §3: no enhanced codes in the EHLO reply.
	s.w.WriteString("250-")
	s.w.WriteString(b.host)
	s.w.WriteString("\r\n")
	if !b.NoPipelining {
		s.w.WriteString("250-PIPELINING\r\n")
	}
	if b.STARTTLS && !s.tls {
		s.w.WriteString("250-STARTTLS\r\n")
	}
	if b.REQUIRETLS && s.tls {
		s.w.WriteString("250-REQUIRETLS\r\n")
	}
	if !b.NoChunking {
		s.w.WriteString("250-CHUNKING\r\n")
	}
	s.w.WriteString("250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250 SIZE " +
		strconv.Itoa(maxMessageSize) + "\r\n")
	return true
}

// parsePath splits `FROM:<addr> params` (prefix "FROM:" or "TO:").
func parsePath(arg []byte, prefix string) (addr, params []byte, ok bool) {
	if len(arg) < len(prefix) || !isVerb(arg[:len(prefix)], prefix) {
		return nil, nil, false
	}
	rest := bytes.TrimLeft(arg[len(prefix):], " ")
	if len(rest) == 0 || rest[0] != '<' {
		return nil, nil, false
	}
	end := bytes.IndexByte(rest, '>')
	if end < 0 {
		return nil, nil, false
	}
	addr = rest[1:end]
	if bytes.ContainsAny(addr, " <\t") {
		return nil, nil, false
	}
	return addr, bytes.TrimSpace(rest[end+1:]), true
}

// throttle answers MAIL or RCPT with the throttle reply; false means close.
func (s *session) throttle(b *behavior) bool {
	r := b.ThrottleReply
	if r == "" {
		r = "421 4.7.0 [TSS04] Messages from " + s.ip + " temporarily deferred due to unexpected volume"
	}
	return s.reject(r)
}

// reject answers a MAIL/RCPT rejection, counted by code; a 421 closes (RFC 5321
// §3.8: 421 means the server is closing the channel).
func (s *session) reject(r string) bool {
	code := replyCode(r)
	s.p.countRcptReject(code)
	s.reply(r)
	return code != 421
}

func (s *session) mail(b *behavior, arg []byte) bool {
	if !s.helo {
		return s.bad("503 5.5.1 Send EHLO first")
	}
	if s.inTx {
		return s.bad("503 5.5.1 Nested MAIL command")
	}
	addr, params, ok := parsePath(arg, "FROM:")
	if !ok {
		return s.bad("501 5.5.4 Syntax: MAIL FROM:<address>")
	}
	for len(params) > 0 {
		var kv []byte
		kv, params, _ = bytes.Cut(params, []byte(" "))
		k, v, _ := bytes.Cut(kv, []byte("="))
		switch {
		case len(kv) == 0:
		case isVerb(k, "SIZE"):
			// RFC 1870 §6.2: refuse at once a message declared too big.
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil || n < 0 {
				return s.bad("501 5.5.4 Bad SIZE parameter")
			}
			if n > maxMessageSize {
				s.p.countAttempt()
				return s.reject("552 5.3.4 Message size exceeds fixed maximum message size")
			}
		case isVerb(k, "BODY"):
			if !isVerb(v, "8BITMIME") && !isVerb(v, "7BIT") {
				return s.bad("501 5.5.4 Bad BODY parameter")
			}
		case isVerb(k, "SMTPUTF8") && len(v) == 0:
		case isVerb(k, "REQUIRETLS") && len(v) == 0 && b.REQUIRETLS && s.tls:
			// RFC 8689 §4.1: only over TLS, and only when advertised.
			s.p.smu.Lock()
			s.p.st.RequireTLSMail++
			s.p.smu.Unlock()
		default:
			return s.bad("555 5.5.4 Unsupported MAIL parameter")
		}
	}
	s.p.countAttempt()
	if b.MailReply != nil {
		if r := b.MailReply(s.ip); r != "" && r[0] != '2' {
			return s.reject(r)
		}
	}
	if b.MaxMsgsPerConn > 0 && s.msgs >= b.MaxMsgsPerConn {
		return s.reject("421 4.7.0 Too many messages on this connection")
	}
	if !s.at(b, atMail) {
		return false
	}
	if s.p.throttled(b) {
		return s.throttle(b)
	}
	s.inTx = true
	if b.BodyHook != nil {
		s.from = string(addr)
	}
	s.reply("250 2.1.0 OK")
	return true
}

func (s *session) rcpt(b *behavior, arg []byte) bool {
	if !s.inTx {
		return s.bad("503 5.5.1 Need MAIL before RCPT")
	}
	addr, params, ok := parsePath(arg, "TO:")
	if !ok || len(addr) == 0 {
		return s.bad("501 5.5.4 Syntax: RCPT TO:<address>")
	}
	if len(params) > 0 {
		return s.bad("555 5.5.4 Unsupported RCPT parameter")
	}
	s.rcptSeen = true
	if !s.at(b, atRcpt) {
		return false
	}
	if len(s.rcpts) >= maxRecipients {
		return s.reject("452 4.5.3 Too many recipients")
	}
	if s.p.throttled(b) {
		return s.throttle(b)
	}
	rcpt := string(addr)
	r := ""
	if b.RcptReply != nil {
		r = b.RcptReply(rcpt)
	}
	if r != "" && r[0] != '2' {
		return s.reject(r)
	}
	if r == "" {
		r = "250 2.1.5 OK"
	}
	s.rcpts = append(s.rcpts, rcpt)
	s.reply(r)
	return true
}

func (s *session) data(b *behavior, arg []byte) bool {
	switch {
	case !s.inTx:
		return s.bad("503 5.5.1 Need MAIL before DATA")
	case s.chunking:
		// RFC 3030 §2: DATA and BDAT do not mix in one transaction, which is over.
		s.resetTx()
		return s.bad("503 5.5.1 DATA after BDAT")
	case len(s.rcpts) == 0 && s.rcptSeen:
		// RFC 2920 §3.1: DATA after only failed RCPTs is refused.
		return s.bad("554 5.5.1 No valid recipients")
	case len(s.rcpts) == 0:
		return s.bad("503 5.5.1 Need RCPT before DATA")
	case len(arg) > 0:
		return s.bad("501 5.5.4 DATA takes no argument")
	}
	if !s.at(b, atData) {
		return false
	}
	s.reply("354 Start mail input; end with <CRLF>.<CRLF>")
	keep := b.BodyHook != nil
	problem, err := s.readBody(keep)
	if err != nil {
		return false
	}
	return s.endMessage(problem)
}

// endMessage answers a message read in full, by DATA or BDAT: the reply
// problem refuses it, else DataReply judges it, else it is accepted. The
// transaction is over either way; false means close the connection.
func (s *session) endMessage(problem string) bool {
	b := s.p.beh.Load()
	if s.pipelined(b) || !s.at(b, atDot) {
		return false
	}
	defer s.resetTx()
	if problem != "" {
		s.p.countDataReject(replyCode(problem))
		s.reply(problem)
		return true
	}
	if b.DataReply == nil {
		s.acceptMessage(b, "")
		return true
	}
	s.p.dataMu.Lock()
	r := b.DataReply(s.p.delivered.Load())
	if r == "" || r[0] == '2' {
		s.acceptMessage(b, r)
		s.p.dataMu.Unlock()
		return true
	}
	s.p.dataMu.Unlock()
	code := replyCode(r)
	s.p.countDataReject(code)
	s.reply(r)
	return code != 421
}

func (s *session) acceptMessage(b *behavior, r string) {
	if b.BodyHook != nil {
		b.BodyHook(s.from, slices.Clone(s.rcpts), bytes.Clone(s.body))
	}
	id := s.p.accept(s)
	if r != "" {
		s.reply(r)
		return
	}
	var buf [64]byte
	out := append(buf[:0], "250 2.0.0 OK queued as "...)
	out = strconv.AppendInt(out, id, 16)
	out = append(out, "\r\n"...)
	s.w.Write(out)
}

// readBody reads the message up to the lone dot, undoing dot-stuffing (RFC 5321
// §4.5.2). It returns a reply for a message it must refuse, or an error when the
// connection is lost. Only a CRLF.CRLF ends the data (§4.1.1.4), and lines ending
// in a bare LF refuse the message (§2.3.8), so smuggled commands cannot hide in it.
func (s *session) readBody(keep bool) (problem string, err error) {
	s.body = s.body[:0]
	var size int64
	atStart := true
	for {
		if err := s.flushIfIdle(); err != nil {
			return "", err
		}
		line, err := s.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			if problem == "" {
				problem = "554 5.6.0 Line too long (limit " + strconv.Itoa(maxLineLen) + " characters)"
			}
			atStart = false
			size += int64(len(line))
			if size > 2*maxMessageSize {
				return "", errDiscard // a hostile stream; stop reading it
			}
			continue
		}
		if err != nil {
			return "", err
		}
		if atStart {
			if len(line) == 3 && line[0] == '.' && line[1] == '\r' {
				return problem, nil
			}
			if line[0] == '.' {
				line = line[1:]
			}
			if len(line) > maxLineLen+2 && problem == "" {
				problem = "554 5.6.0 Line too long (limit " + strconv.Itoa(maxLineLen) + " characters)"
			}
		}
		atStart = true
		if (len(line) < 2 || line[len(line)-2] != '\r') && problem == "" {
			problem = "554 5.6.0 Bare LF in message, lines must end with CRLF"
		}
		size += int64(len(line))
		if size > maxMessageSize {
			problem = "552 5.3.4 Message size exceeds fixed maximum message size"
			if size > 2*maxMessageSize {
				return "", errDiscard
			}
			continue
		}
		if keep {
			s.body = append(s.body, line...)
		}
	}
}

const tooBig = "552 5.3.4 Message size exceeds fixed maximum message size"

// bdat handles BDAT <size> [LAST] (RFC 3030 §2). The size octets that follow
// the command line are a chunk of the message, kept as they are (no
// dot-stuffing, no end marker); the LAST chunk ends the message, which then
// gets the verdict the end of DATA gives. A refused chunk is still read, so
// that we stay in step with the client, and it ends the transaction.
func (s *session) bdat(b *behavior, arg []byte) bool {
	size, last, ok := parseBDAT(arg)
	if !ok {
		// Where the chunk ends is unknown, so nothing after it can be read
		// as a command: hang up, as Postfix does.
		s.reply("501 5.5.4 Syntax: BDAT size [LAST]")
		return false
	}
	refusal := ""
	switch {
	case !s.inTx:
		refusal = "503 5.5.1 Need MAIL before BDAT"
	case len(s.rcpts) == 0 && s.rcptSeen:
		refusal = "554 5.5.1 No valid recipients"
	case len(s.rcpts) == 0:
		refusal = "503 5.5.1 Need RCPT before BDAT"
	case size > maxMessageSize-s.chunked:
		refusal = tooBig
	}
	if size > maxChunkDiscard {
		// Too much to read only to stay in step.
		if refusal == tooBig {
			s.p.countDataReject(552)
		}
		s.reply(refusal)
		return false
	}
	if refusal == "" && !s.chunking {
		if !s.at(b, atData) {
			return false
		}
		s.chunking = true
		s.body = s.body[:0]
	}
	if s.readChunk(size, refusal == "" && b.BodyHook != nil) != nil {
		return false
	}
	if refusal != "" {
		if s.pipelined(s.p.beh.Load()) {
			return false
		}
		s.resetTx()
		if refusal == tooBig {
			s.p.countDataReject(552)
			s.reply(refusal)
			return true
		}
		return s.bad(refusal)
	}
	s.chunked += size
	if last {
		return s.endMessage("")
	}
	if s.pipelined(s.p.beh.Load()) {
		return false
	}
	var buf [64]byte
	out := append(buf[:0], "250 2.0.0 "...)
	out = strconv.AppendInt(out, size, 10)
	out = append(out, " octets received\r\n"...)
	s.w.Write(out)
	return true
}

// parseBDAT reads BDAT's arguments, chunk-size [SP "LAST"], where chunk-size
// is 1*DIGIT (RFC 3030 §3).
func parseBDAT(arg []byte) (size int64, last, ok bool) {
	num, rest, _ := bytes.Cut(bytes.TrimSpace(arg), []byte(" "))
	rest = bytes.TrimLeft(rest, " ")
	if len(num) == 0 || len(rest) > 0 && !isVerb(rest, "LAST") {
		return 0, false, false
	}
	for _, c := range num {
		if c < '0' || c > '9' || size > (1<<63-1-9)/10 {
			return 0, false, false
		}
		size = size*10 + int64(c-'0')
	}
	return size, len(rest) > 0, true
}

// readChunk reads the n octets of a BDAT chunk, appending them to s.body when
// keep. The replies queued so far go out only when it must wait on the socket,
// so no client waits on us. flushIfIdle does not fit: it flushes as soon as no
// line end is buffered, and a chunk needs none, so the replies to a pipelined
// MAIL, RCPT, BDAT group would go out in two writes, not one.
func (s *session) readChunk(n int64, keep bool) error {
	for n > 0 {
		if s.r.Buffered() == 0 {
			if err := s.w.Flush(); err != nil {
				return err
			}
			if _, err := s.r.Peek(1); err != nil {
				return err
			}
		}
		k := int(min(n, int64(s.r.Buffered())))
		if keep {
			b, _ := s.r.Peek(k)
			s.body = append(s.body, b...)
		}
		s.r.Discard(k)
		n -= int64(k)
	}
	return nil
}

func (s *session) startTLS(b *behavior, arg []byte) bool {
	switch {
	case !b.STARTTLS:
		return s.bad("502 5.5.1 STARTTLS not offered")
	case s.tls:
		return s.bad("503 5.5.1 TLS already active")
	case len(arg) > 0:
		return s.bad("501 5.5.4 STARTTLS takes no argument")
	}
	s.p.smu.Lock()
	s.p.st.StartTLSSeen++
	s.p.smu.Unlock()
	s.reply("220 2.0.0 Ready to start TLS")
	if s.w.Flush() != nil || b.BreakTLS {
		return false
	}
	cfg := s.p.tlsConfig
	if b.Certificate != nil {
		cfg = cfg.Clone()
		cfg.Certificates = []tls.Certificate{*b.Certificate}
	}
	tc := tls.Server(deadlineConn{s.raw}, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), idleTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return false
	}
	s.p.countTLS(tc.ConnectionState().DidResume)
	// RFC 3207 §4.2: forget everything learnt before TLS, EHLO included. Resetting
	// the reader also drops plaintext a client pipelined after STARTTLS (§5), so it
	// cannot be injected into the protected session.
	s.tls = true
	s.helo = false
	s.resetTx()
	s.r.Reset(tc)
	s.w.Reset(tc)
	return true
}

// replyCode is the 3-digit code at the start of r, or 0.
func replyCode(r string) int {
	if len(r) < 3 {
		return 0
	}
	n := 0
	for i := range 3 {
		c := r[i]
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	if len(r) > 3 && r[3] != ' ' && r[3] != '-' {
		return 0
	}
	return n
}
