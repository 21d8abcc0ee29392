package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/penstock-mta/penstock/dns"
)

// ContentType is the media type of a gzipped report (RFC 8460 §6.4).
const ContentType = "application/tlsrpt+gzip"

// ParseRecord parses the reporting policy of a _smtp._tls TXT record
// (RFC 8460 §3) and returns its rua URIs: mailto: and https: only, the
// others skipped. A record that is not TLSRPTv1 is an error.
func ParseRecord(txt string) ([]string, error) {
	fields := strings.Split(txt, ";")
	if strings.TrimSpace(fields[0]) != "v=TLSRPTv1" {
		return nil, errors.New("not a TLSRPTv1 record")
	}
	var rua []string
	found := false
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(strings.TrimSpace(f), "=")
		if !ok || strings.TrimSpace(k) != "rua" {
			continue // extension fields are ignored (§3)
		}
		found = true
		for _, u := range strings.Split(v, ",") {
			u = strings.TrimSpace(u)
			lu := strings.ToLower(u)
			if strings.HasPrefix(lu, "mailto:") || strings.HasPrefix(lu, "https:") {
				rua = append(rua, u)
			}
		}
	}
	if !found {
		return nil, errors.New("no rua field")
	}
	if len(rua) == 0 {
		return nil, errors.New("no mailto: or https: URI in rua")
	}
	return rua, nil
}

// ErrNoRecord: the domain publishes no usable TLSRPT record, so nobody
// asked for its reports.
var ErrNoRecord = errors.New("no usable TLSRPTv1 record")

// LookupRUA finds the rua URIs of domain's TLSRPT record. Several valid
// records mean none is used (RFC 8460 §3).
func LookupRUA(ctx context.Context, r dns.Resolver, domain string) ([]string, error) {
	txts, err := r.LookupTXT(ctx, "_smtp._tls."+domain)
	var de *dns.Error
	if errors.As(err, &de) && de.Kind != dns.Temporary {
		return nil, fmt.Errorf("%w: %w", ErrNoRecord, err)
	}
	if err != nil {
		return nil, err
	}
	var rua []string
	n := 0
	for _, t := range txts {
		if !strings.HasPrefix(t, "v=TLSRPTv1") {
			continue
		}
		n++
		u, err := ParseRecord(t)
		if err != nil {
			return nil, fmt.Errorf("%w: _smtp._tls.%s: %w", ErrNoRecord, domain, err)
		}
		rua = u
	}
	switch n {
	case 0:
		return nil, fmt.Errorf("%w: _smtp._tls.%s has none", ErrNoRecord, domain)
	case 1:
		return rua, nil
	}
	return nil, fmt.Errorf("%w: _smtp._tls.%s has %d, none used (RFC 8460 §3)", ErrNoRecord, domain, n)
}

// Gzip returns the report's JSON, gzipped.
func (rep Report) Gzip() ([]byte, error) {
	j, err := rep.JSON()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(j); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Sender delivers reports to their rua URIs.
type Sender struct {
	Resolver dns.Resolver
	// HTTP posts to https: URIs; nil: a client with a 60 s timeout and the
	// system's roots (certificates are always verified, RFC 8460 §5.4).
	HTTP *http.Client
	// Mail queues a message for delivery (Penstock's own spool); from is
	// the envelope sender.
	Mail func(ctx context.Context, from, to string, msg []byte) error
	// From is the report's From address (e.g. "tlsrpt@<hostname>").
	From string
	Org  Org
	Now  func() time.Time
}

// Send sends rep to every rua URI of its domain's TLSRPT record. It
// returns the URIs it reached and the errors of the others.
func (s *Sender) Send(ctx context.Context, rep Report) ([]string, error) {
	rua, err := LookupRUA(ctx, s.Resolver, rep.Domain)
	if err != nil {
		return nil, err
	}
	gz, err := rep.Gzip()
	if err != nil {
		return nil, err
	}
	var sent []string
	var errs []error
	for _, u := range rua {
		var err error
		if strings.HasPrefix(strings.ToLower(u), "mailto:") {
			err = s.mail(ctx, rep, u, gz)
		} else {
			err = s.post(ctx, u, gz)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u, err))
			continue
		}
		sent = append(sent, u)
	}
	return sent, errors.Join(errs...)
}

func (s *Sender) post(ctx context.Context, u string, gz []byte) error {
	c := s.HTTP
	if c == nil {
		c = &http.Client{Timeout: 60 * time.Second}
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(gz))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", ContentType)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	// RFC 8460 §5.4: a 2xx is success; anything else is a failure.
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	return nil
}

func (s *Sender) mail(ctx context.Context, rep Report, u string, gz []byte) error {
	if s.Mail == nil {
		return errors.New("no mail submission configured")
	}
	pu, err := url.Parse(u)
	if err != nil {
		return err
	}
	to := pu.Opaque
	if to == "" {
		to = pu.Path
	}
	if q := strings.IndexByte(to, '?'); q >= 0 {
		to = to[:q]
	}
	if to, err = url.PathUnescape(to); err != nil {
		return err
	}
	if a, err := mail.ParseAddress(to); err != nil || a.Address != to {
		return fmt.Errorf("bad mailto address %q", to)
	}
	msg, err := s.Compose(rep, to, gz)
	if err != nil {
		return err
	}
	return s.Mail(ctx, s.From, to, msg)
}

// Compose builds the report message of RFC 8460 §5.3: a multipart/report
// (report-type tlsrpt) with a text part and the gzipped JSON attached.
func (s *Sender) Compose(rep Report, to string, gz []byte) ([]byte, error) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	var rnd [12]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	boundary := "tlsrpt-" + hex.EncodeToString(rnd[:])
	start, _ := time.Parse(time.RFC3339, rep.DateRange.Start)
	end, _ := time.Parse(time.RFC3339, rep.DateRange.End)
	// §5.3: sender!policy-domain!begin-timestamp!end-timestamp.json.gz,
	// timestamps in seconds since the epoch.
	filename := s.Org.Submitter + "!" + rep.Domain + "!" + strconv.FormatInt(start.Unix(), 10) + "!" +
		strconv.FormatInt(end.Unix(), 10) + ".json.gz"
	var b bytes.Buffer
	h := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	h("From", s.From)
	h("To", to)
	h("Date", now().UTC().Format(time.RFC1123Z))
	h("Subject", "Report Domain: "+rep.Domain+" Submitter: "+s.Org.Submitter+" Report-ID: <"+rep.ReportID+">")
	// The report id holds ':' (a date), which a Message-ID may not.
	h("Message-ID", "<tlsrpt."+hex.EncodeToString(rnd[:])+"@"+s.Org.Submitter+">")
	h("TLS-Report-Domain", rep.Domain)
	h("TLS-Report-Submitter", s.Org.Submitter)
	h("MIME-Version", "1.0")
	h("Content-Type", mime.FormatMediaType("multipart/report", map[string]string{"report-type": "tlsrpt", "boundary": boundary}))
	b.WriteString("\r\nThis is a multipart message in MIME format.\r\n\r\n--" + boundary + "\r\n")
	h("Content-Type", `text/plain; charset="us-ascii"`)
	h("Content-Transfer-Encoding", "7bit")
	b.WriteString("\r\nThis is an aggregate TLS report from " + s.Org.Submitter + "\r\n\r\n--" + boundary + "\r\n")
	h("Content-Type", ContentType)
	h("Content-Transfer-Encoding", "base64")
	h("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": filename}))
	b.WriteString("\r\n")
	enc := base64.StdEncoding.EncodeToString(gz)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--" + boundary + "--\r\n")
	return b.Bytes(), nil
}

// keepUnsent is how long a day whose report could not be sent is tried
// again at each daily run before it is dropped.
const keepUnsent = 3 * 24 * time.Hour

// Outcome is what SendDue did with one report.
type Outcome struct {
	Day, Domain string
	Sent        []string // the rua URIs reached
	Err         error
	Dropped     bool // forgotten without being sent everywhere
}

// SendDue sends the report of every domain for every finished UTC day held
// by rec (days before now's) and forgets the days sent. A domain without a
// TLSRPT record is forgotten (nobody asked for its report); a failed send is
// tried again at the next run until the day is older than keepUnsent.
func (s *Sender) SendDue(ctx context.Context, rec *Recorder, now time.Time) []Outcome {
	today := now.UTC().Format(dayLayout)
	var out []Outcome
	for _, day := range rec.Days() {
		if day >= today || ctx.Err() != nil {
			continue
		}
		reps, err := rec.Reports(day, "", s.Org)
		if err != nil {
			continue
		}
		start, _ := time.Parse(dayLayout, day)
		old := now.Sub(start) > keepUnsent
		for _, rep := range reps {
			if ctx.Err() != nil {
				break
			}
			sent, err := s.Send(ctx, rep)
			o := Outcome{Day: day, Domain: rep.Domain, Sent: sent, Err: err}
			noRecord := errors.Is(err, ErrNoRecord)
			if err == nil || noRecord || len(sent) > 0 || old {
				o.Dropped = err != nil
				rec.Forget(day, rep.Domain)
			}
			out = append(out, o)
		}
	}
	return out
}
