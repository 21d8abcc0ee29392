package api

import (
	"net/http"

	"github.com/penstock-mta/penstock/tlsstatus"
)

// TLSStatus is an optional part of the Backend: transport security to
// receivers as last seen by the queue.
type TLSStatus interface {
	TLSStatus() TLSStatusView
}

// TLSStatusView is GET /api/v1/tls: per recipient domain the policy in
// force, per MX host the last TLS outcome.
type TLSStatusView struct {
	Domains []tlsstatus.DomainPolicy `json:"domains"` // sorted by domain
	Hosts   []tlsstatus.HostOutcome  `json:"hosts"`   // sorted by host
}

func (h *handler) tlsStatus(w http.ResponseWriter, r *http.Request) {
	ts, ok := h.b.(TLSStatus)
	if !ok {
		writeErr(w, http.StatusNotFound, "TLS status is not available on this node", "")
		return
	}
	writeJSON(w, http.StatusOK, ts.TLSStatus())
}
