package api

import (
	"net/http"
	"time"
)

// DKIMDomain is one sending (From) domain in GET /api/v1/dkim: whether its
// mail leaves signed and DMARC-aligned, from the signing stage's counts.
type DKIMDomain struct {
	Domain string `json:"domain"` // "(other)": past the bound of domains kept, or no readable From
	// Status sums up the last day: signed (every message signed, aligned),
	// third_party (signed, never aligned), unsigned, or mixed.
	Status      string     `json:"status"`
	SignedBy    string     `json:"signed_by,omitempty"` // the last signatures made: "d=... s=... a=..."
	LastHour    DKIMCounts `json:"last_hour"`           // to within five minutes
	LastDay     DKIMCounts `json:"last_day"`            // to within one hour
	LastMessage time.Time  `json:"last_message"`
}

// DKIMCounts counts messages through the signing stage.
type DKIMCounts struct {
	Signed     uint64 `json:"signed"`      // signed by the From domain (or its organisational domain)
	ThirdParty uint64 `json:"third_party"` // signed by another domain only: not DMARC-aligned
	// Unsigned counts by reason: no_key, key_not_active, no_from,
	// bad_from.
	Unsigned map[string]uint64 `json:"unsigned,omitempty"`
}

// Status names the mix: signed, third_party, unsigned, mixed, or none.
func (c DKIMCounts) Status() string {
	var unsigned uint64
	for _, n := range c.Unsigned {
		unsigned += n
	}
	switch {
	case c.Signed == 0 && c.ThirdParty == 0 && unsigned == 0:
		return "none"
	case c.ThirdParty == 0 && unsigned == 0:
		return "signed"
	case c.Signed == 0 && unsigned == 0:
		return "third_party"
	case c.Signed == 0 && c.ThirdParty == 0:
		return "unsigned"
	}
	return "mixed"
}

func (h *handler) dkim(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"domains": h.b.DKIMDomains()})
}
