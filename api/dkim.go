package api

import "net/http"

func (h *handler) dkim(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"domains": h.b.DKIMDomains()})
}
