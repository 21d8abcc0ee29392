package api

import (
	"net/http"

	"github.com/penstock-mta/penstock/dkim"
)

func (h *handler) dkim(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"domains": h.dkimDomains()})
}

func (h *handler) dkimDomains() []dkim.DomainStatus {
	if h.d.DKIM == nil {
		return []dkim.DomainStatus{}
	}
	return h.d.DKIM.Domains()
}
