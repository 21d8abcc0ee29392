package smtpserver

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// maxAuthFailures is how many failed AUTH exchanges a connection may have;
// the next AUTH gets 421 and the connection is closed, which slows password
// guessing to one TCP handshake per few attempts.
const maxAuthFailures = 3

var (
	errAuthMalformed = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Malformed AUTH response"}
	errAuthNeedsTLS  = &smtp.SMTPError{Code: 538, EnhancedCode: smtp.EnhancedCode{5, 7, 11}, Message: "Encryption required for authentication: use STARTTLS first"} // RFC 4954 §6
	errAuthExchange  = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "Unexpected AUTH response"}
)

// checkPassword compares in constant time. Both sides are hashed first so
// that neither the password's length nor whether the user exists leaks
// through timing.
func checkPassword(users map[string]string, user, pass string) bool {
	want, ok := users[user]
	w := sha256.Sum256([]byte(want))
	g := sha256.Sum256([]byte(pass))
	return subtle.ConstantTimeCompare(w[:], g[:]) == 1 && ok
}

// plainServer is the server side of SASL PLAIN (RFC 4616). It is ours rather
// than go-sasl's so that a malformed response gets a 501 instead of a 454
// "temporary" failure.
type plainServer struct {
	check func(user, pass string) error
	done  bool
}

func (p *plainServer) Next(resp []byte) ([]byte, bool, error) {
	if p.done {
		return nil, false, errAuthExchange
	}
	if resp == nil {
		// No initial response: an empty challenge asks for it (RFC 4954 §4).
		return []byte{}, false, nil
	}
	p.done = true
	parts := bytes.Split(resp, []byte{0})
	if len(parts) != 3 || len(parts[1]) == 0 {
		return nil, false, errAuthMalformed
	}
	authz, user, pass := string(parts[0]), string(parts[1]), string(parts[2])
	if authz != "" && authz != user {
		// Acting on behalf of another identity is not supported.
		return nil, false, smtp.ErrAuthFailed
	}
	if err := p.check(user, pass); err != nil {
		return nil, false, err
	}
	return nil, true, nil
}

// loginServer is the server side of the LOGIN mechanism
// (draft-murchison-sasl-login), still the only one some mail libraries use.
type loginServer struct {
	check func(user, pass string) error
	step  int
	user  string
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step = 1
		if resp == nil {
			return []byte("Username:"), false, nil
		}
		// An initial response carries the user name.
		fallthrough
	case 1:
		l.user = string(resp)
		l.step = 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		if err := l.check(l.user, string(resp)); err != nil {
			return nil, false, err
		}
		return nil, true, nil
	}
	return nil, false, errAuthExchange
}

var (
	_ sasl.Server = (*plainServer)(nil)
	_ sasl.Server = (*loginServer)(nil)
)
