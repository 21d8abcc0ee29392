package reports

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"strings"

	"github.com/penstock-mta/penstock/dsn"
)

// VERP makes and checks return paths bound to their recipient address. The
// address form is dsn's (b+<msgid>.<rcpt>.<check>@domain); the check's key
// is HMAC-SHA256(Key, address), so a valid return path proves which address
// it was made for without any lookup, and a report cannot name another.
type VERP struct {
	Domain string
	Key    []byte // secret, stable: changing it orphans bounces in flight
}

// bindLabel separates this use of the key from dsn's own.
const bindLabel = "penstock verp recipient\x00"

// normAddr is the form an address is bound in: no brackets or spaces, lower
// case (relays and reporters fold case; the quarantine compares
// case-insensitively by default).
func normAddr(a string) string {
	a = strings.TrimSpace(a)
	a = strings.TrimSuffix(strings.TrimPrefix(a, "<"), ">")
	return strings.ToLower(strings.TrimSpace(a))
}

func (v *VERP) bound(addr string) dsn.VERP {
	m := hmac.New(sha256.New, v.Key)
	m.Write([]byte(bindLabel))
	m.Write([]byte(normAddr(addr)))
	return dsn.VERP{Domain: v.Domain, Key: m.Sum(nil)}
}

// Encode is the return path of recipient index rcpt, address addr, of
// message msgID.
func (v *VERP) Encode(msgID string, rcpt int, addr string) string {
	return v.bound(addr).Encode(msgID, rcpt)
}

// verpState is what a report's envelope recipients say.
type verpState int

const (
	noVERP    verpState = iota // no recipient has the VERP form (postmaster@, abuse@)
	badVERP                    // VERP form, but no named address verifies
	oldVERP                    // signed with the unbound key of earlier versions: proves no address
	validVERP                  // verified for one named address
)

// match looks for an envelope recipient that verifies for one of cands; it
// returns the message id, the recipient index and the candidate's index.
func (v *VERP) match(to, cands []string) (state verpState, msgID string, rcpt, cand int) {
	state = noVERP
	plain := dsn.VERP{Domain: v.Domain, Key: v.Key}
	for _, t := range to {
		// With the unbound key a bound return path fails only its check:
		// that tells the VERP form from postmaster@.
		switch _, _, err := plain.Decode(t); {
		case err == nil:
			state = max(state, oldVERP)
			continue
		case errors.Is(err, dsn.ErrBadCheck):
			state = max(state, badVERP)
		default:
			continue
		}
		for i, c := range cands {
			if normAddr(c) == "" {
				continue
			}
			if id, r, err := v.bound(c).Decode(t); err == nil {
				return validVERP, id, r, i
			}
		}
	}
	return state, "", 0, -1
}
