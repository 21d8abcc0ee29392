package dkim

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/message"
	"github.com/penstock-mta/penstock/spool"
)

// Stage is the body pipeline's signing stage: it signs the final bytes
// with the keys package dkim chooses (the From domain's, its parent's, the
// pool's) and notes d= and s= for the delivery log. The signer is swapped
// on reload, so a rotation in the configuration takes effect without a
// restart. A body shared by many sends (a campaign body without
// variables, named by Send.BodyKey) is hashed once.
type Stage struct {
	signer atomic.Pointer[Signer] // nil: no key configured, nothing signed
	now    func() time.Time
	logger *slog.Logger

	mu       sync.Mutex
	bodies   map[string]*Body           // by Send.BodyKey, bounded
	counts   map[string]uint64          // "signed", "third_party", "unsigned_<reason>"
	unsigned map[string]bool            // From domains logged once as unaligned or unsigned
	domains  map[string]*domainOutcomes // outcomes by From domain, bounded (status.go)
}

const maxSharedBodies = 256

func NewStage(now func() time.Time, logger *slog.Logger) *Stage {
	return &Stage{now: now, logger: logger, bodies: map[string]*Body{}, counts: map[string]uint64{}, unsigned: map[string]bool{},
		domains: map[string]*domainOutcomes{}}
}

func (d *Stage) Name() string                     { return "dkim" }
func (*Stage) Scope(*spool.Message) message.Scope { return message.PerMessage }

func (d *Stage) Apply(_ context.Context, s *message.Send) error {
	signer := d.signer.Load()
	if signer == nil {
		return nil
	}
	body := d.body(s)
	fields, res, err := signer.SignHeader(s.Header(), body, d.now(), s.Msg.Pool)
	if err != nil {
		return err // a key that fails to sign: temporary, like any local fault
	}
	if !res.Signed() {
		d.count(res, "")
		s.Note("dkim", "unsigned: "+res.Reason)
		d.logOnce(res.FromDomain, "mail leaves unsigned (DKIM)", "from_domain", res.FromDomain, "reason", res.Reason)
		return nil
	}
	if res.RemoveExisting {
		h := WithoutSignatures(s.Header())
		s.Data = append(append(make([]byte, 0, len(s.Data)), h...), s.Data[s.HeaderLen:]...)
		s.HeaderLen = len(h)
	}
	s.Prepend(fields)
	var sigs []string
	for _, sig := range res.Signatures {
		sigs = append(sigs, fmt.Sprintf("d=%s s=%s a=%s", sig.Domain, sig.Selector, sig.Algorithm))
	}
	note := strings.Join(sigs, ", ")
	d.count(res, note)
	if !res.Aligned {
		note += " (third-party: not aligned with " + res.FromDomain + ")"
		d.logOnce(res.FromDomain, "DKIM signature not aligned with the From domain (third-party signature)",
			"from_domain", res.FromDomain, "signed_by", res.Signatures[0].Domain)
	}
	s.Note("dkim", note)
	return nil
}

// body is the message body to sign, shared across sends with the same
// BodyKey so that its hash is computed once.
func (d *Stage) body(s *message.Send) *Body {
	if s.BodyKey == "" {
		return NewBody(s.Body())
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	b := d.bodies[s.BodyKey]
	if b == nil {
		if len(d.bodies) >= maxSharedBodies {
			clear(d.bodies) // rare: more live templates than the bound
		}
		b = NewBody(s.Body())
		d.bodies[s.BodyKey] = b
	}
	return b
}

// count counts res overall and for its From domain; signedBy is the
// signatures made, for the per-domain status.
func (d *Stage) count(res Result, signedBy string) {
	k := "signed"
	switch {
	case !res.Signed():
		k = "unsigned_" + res.Reason
	case !res.Aligned:
		k = "third_party"
	}
	d.mu.Lock()
	d.counts[k]++
	d.noteDomain(res, signedBy)
	d.mu.Unlock()
}

// logOnce logs a signing outcome worth an operator's eye once per From
// domain (bounded), not once per message.
func (d *Stage) logOnce(domain, msg string, args ...any) {
	d.mu.Lock()
	seen := d.unsigned[domain]
	if !seen && len(d.unsigned) < 10000 {
		d.unsigned[domain] = true
	}
	d.mu.Unlock()
	if !seen {
		d.logger.Warn(msg, args...)
	}
}

// Counts returns messages signed, signed by a third party, and unsigned
// by reason.
func (d *Stage) Counts() map[string]uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return maps.Clone(d.counts)
}

// Load builds the signer of cfg's keys (checked: unreadable or weak keys
// are refused, naming the file) and puts it in force; with no key
// configured nothing is signed. It returns the warnings about the keys.
func (d *Stage) Load(cfg *config.Config) (warnings []string, err error) {
	if len(cfg.DKIM) == 0 {
		d.signer.Store(nil)
		return nil, nil
	}
	signer, warnings, err := New(cfg)
	if err != nil {
		return nil, err
	}
	d.signer.Store(signer)
	return warnings, nil
}
