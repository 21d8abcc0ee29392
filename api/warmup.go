package api

import (
	"net/http"

	"github.com/penstock-mta/penstock/warmup"
)

// Warmups is a Backend with warm-up schedules ([[warmup]]); a Backend
// without them answers an empty list.
type Warmups interface {
	Warmup() []warmup.Status
}

// WarmupList is the body of GET /api/v1/warmup.
type WarmupList struct {
	Sources []warmup.Status `json:"sources"`
}

// warmup serves GET /api/v1/warmup: each warming (source, group) pair's
// day, step, today's volume and limit, health and next decision.
func (h *handler) warmup(w http.ResponseWriter, r *http.Request) {
	out := WarmupList{Sources: []warmup.Status{}}
	if wb, ok := h.b.(Warmups); ok {
		if st := wb.Warmup(); st != nil {
			out.Sources = st
		}
	}
	writeJSON(w, http.StatusOK, out)
}
