package api

import (
	"net/http"

	"github.com/penstock-mta/penstock/tlsstatus"
)

// TLSStatus is an optional part (Deps): transport security to receivers
// as last seen by the queue; package tlsstatus's Board is one as it is.
type TLSStatus interface {
	Domains() []tlsstatus.DomainPolicy
	Hosts() []tlsstatus.HostOutcome
}

// TLSStatusView is GET /api/v1/tls: per recipient domain the policy in
// force, per MX host the last TLS outcome.
type TLSStatusView struct {
	Domains []tlsstatus.DomainPolicy `json:"domains"` // sorted by domain
	Hosts   []tlsstatus.HostOutcome  `json:"hosts"`   // sorted by host
}

func (h *handler) tlsStatus(w http.ResponseWriter, r *http.Request) {
	ts := h.d.TLS
	if ts == nil {
		writeErr(w, http.StatusNotFound, "TLS status is not available on this node", "")
		return
	}
	writeJSON(w, http.StatusOK, TLSStatusView{Domains: ts.Domains(), Hosts: ts.Hosts()})
}
