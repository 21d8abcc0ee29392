package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/penstock-mta/penstock/advisor"
	"github.com/penstock-mta/penstock/config"
)

// defaultAdvisePeriod is how far back GET /api/v1/advise looks without since.
const defaultAdvisePeriod = 7 * 24 * time.Hour

// advise serves GET /api/v1/advise?rule=&since=: the advisor's report on the
// node's own delivery log (package advisor).
func (h *handler) advise(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	since := defaultAdvisePeriod
	if v := q.Get("since"); v != "" {
		d, err := config.ParseDuration(v)
		if err != nil || d <= 0 {
			writeErr(w, http.StatusBadRequest, "since must be a positive duration, like \"7d\" or \"12h\"", "since")
			return
		}
		since = time.Duration(d)
	}
	rep, err := h.d.Node.Advise(r.Context(), q.Get("rule"), since)
	switch {
	case errors.Is(err, advisor.ErrUnknownRule):
		writeErr(w, http.StatusBadRequest, err.Error(), "rule")
	case err != nil:
		writeErr(w, http.StatusInternalServerError, err.Error(), "")
	default:
		writeJSON(w, http.StatusOK, rep)
	}
}
