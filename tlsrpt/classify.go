package tlsrpt

import (
	"crypto/x509"
	"errors"

	"github.com/penstock-mta/penstock/smtpclient"
)

// Classify names the RFC 8460 §4.3 result type of a STARTTLS or handshake
// error.
func Classify(err error) string {
	var (
		host    x509.HostnameError
		hostp   *x509.HostnameError
		invalid x509.CertificateInvalidError
		invp    *x509.CertificateInvalidError
		unknown x509.UnknownAuthorityError
		unkp    *x509.UnknownAuthorityError
	)
	switch {
	case errors.Is(err, smtpclient.ErrNoSTARTTLS):
		return StartTLSNotSupported
	case errors.As(err, &host), errors.As(err, &hostp):
		return CertificateHostMismatch
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired,
		errors.As(err, &invp) && invp.Reason == x509.Expired:
		return CertificateExpired
	case errors.As(err, &unknown), errors.As(err, &unkp), errors.As(err, &invalid), errors.As(err, &invp):
		return CertificateNotTrusted
	}
	var se *smtpclient.Error
	if errors.As(err, &se) && se.Command == "STARTTLS" && se.Reply.Code != 0 {
		// The server refused STARTTLS (RFC 3207 §4: 454 or 501).
		return StartTLSNotSupported
	}
	return ValidationFailure
}
