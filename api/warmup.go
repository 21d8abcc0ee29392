package api

import (
	"net/http"

	"github.com/penstock-mta/penstock/warmup"
)

// Warmups is an optional part (Deps): the warm-up schedules
// ([[warmup]]); without it the list is empty. Package warmup's Tracker is
// one as it is.
type Warmups interface {
	Statuses() []warmup.Status
}

// WarmupList is the body of GET /api/v1/warmup.
type WarmupList struct {
	Sources []warmup.Status `json:"sources"`
}

// warmup serves GET /api/v1/warmup: each warming (source, group) pair's
// day, step, today's volume and limit, health and next decision.
func (h *handler) warmup(w http.ResponseWriter, r *http.Request) {
	out := WarmupList{Sources: []warmup.Status{}}
	if h.d.Warmup != nil {
		if st := h.d.Warmup.Statuses(); st != nil {
			out.Sources = st
		}
	}
	writeJSON(w, http.StatusOK, out)
}
