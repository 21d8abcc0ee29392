package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/penstock-mta/penstock/campaign"
	"github.com/penstock-mta/penstock/queue"
)

// DeliveryRequest is the body of POST /api/v1/deliveries: a campaign.
type DeliveryRequest struct {
	Name string `json:"name,omitempty"`
	From string `json:"from"` // envelope sender (return path)
	Pool string `json:"pool,omitempty"`
	// MessagesPerHour limits the campaign as a whole, across sites
	// (0: unlimited); Tenant sends it for a tenant (its quota and share).
	MessagesPerHour int                  `json:"messages_per_hour,omitempty"`
	Tenant          string               `json:"tenant,omitempty"`
	Template        campaign.Template    `json:"template"`
	Recipients      []campaign.Recipient `json:"recipients,omitempty"`
}

// Counts are a delivery's recipients by state.
type Counts struct {
	Queued     int `json:"queued"`
	Delivered  int `json:"delivered"`
	Bounced    int `json:"bounced"`
	Suppressed int `json:"suppressed"`
	Expired    int `json:"expired"`
	Cancelled  int `json:"cancelled"`
}

// DeliveryView is a delivery's progress.
type DeliveryView struct {
	ID              string         `json:"id"`
	Name            string         `json:"name"`
	Sender          string         `json:"sender"`
	Pool            string         `json:"pool,omitempty"`
	MessagesPerHour int            `json:"messages_per_hour,omitempty"`
	Tenant          string         `json:"tenant,omitempty"`
	Created         time.Time      `json:"created"`
	Total           int            `json:"total"`
	Counts          Counts         `json:"counts"`
	ByStatus        map[string]int `json:"by_status,omitempty"` // queued recipients by status text (detail view)
	BouncedByReason map[string]int `json:"bounced_by_reason,omitempty"`
	// Recovered counts recipients that finished between the last saved
	// counts and a crash: final, but not known how.
	Recovered int `json:"recovered,omitempty"`
	// RatePerMinute is the recipients finished in the last minute (or
	// since creation, if younger), per minute.
	RatePerMinute float64    `json:"rate_per_minute"`
	ETA           *time.Time `json:"eta,omitempty"`
	// Held counts queued recipients waiting on something the rate cannot
	// predict (a suspended site, dynamic flow control, an hourly quota
	// met, an MX lookup failing); the ETA leaves them out and ETANote says
	// so, or why there is no ETA. Only the detail view knows them.
	Held    int    `json:"held,omitempty"`
	ETANote string `json:"eta_note,omitempty"`
	Done    bool   `json:"done"`
}

// AddResult answers a recipient upload.
type AddResult struct {
	Accepted   int `json:"accepted"`
	Suppressed int `json:"suppressed"`
}

// FieldError is bad input in one field (400).
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// NotFoundError is an unknown object (404).
type NotFoundError struct{ What string }

func (e *NotFoundError) Error() string { return "unknown " + e.What }

// Deliveries is the campaign part of Deps.
type Deliveries interface {
	CreateDelivery(ctx context.Context, req DeliveryRequest) (DeliveryView, error)
	AddRecipients(ctx context.Context, id, contentType string, body io.Reader) (AddResult, error)
	Deliveries() []DeliveryView
	Delivery(id string) (DeliveryView, bool)
	CancelDelivery(id, who string) (int, error)
}

// maxDeliveryBody bounds POST /deliveries (inline recipients); larger lists
// are streamed to /deliveries/{id}/recipients.
const maxDeliveryBody = 64 << 20

func (h *handler) createDelivery(w http.ResponseWriter, r *http.Request) {
	var req DeliveryRequest
	if !decode(w, r, &req, maxDeliveryBody) {
		return
	}
	if req.From == "" {
		writeErr(w, http.StatusBadRequest, "from (the envelope sender) is required", "from")
		return
	}
	v, err := h.d.Deliveries.CreateDelivery(r.Context(), req)
	if err != nil {
		if v.ID != "" {
			// Created, but not every recipient made it: say which part.
			writeJSON(w, http.StatusMultiStatus, map[string]any{"delivery": v, "error": err.Error()})
			return
		}
		writeBackendErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, v)
}

func (h *handler) addRecipients(w http.ResponseWriter, r *http.Request) {
	res, err := h.d.Deliveries.AddRecipients(r.Context(), r.PathValue("id"), r.Header.Get("Content-Type"), r.Body)
	if err != nil {
		var ne *NotFoundError
		if errors.As(err, &ne) {
			writeErr(w, http.StatusNotFound, err.Error(), "id")
			return
		}
		var fe *FieldError
		if errors.As(err, &fe) {
			writeErr(w, http.StatusBadRequest, err.Error(), fe.Field)
			return
		}
		// A line of the list is bad: what came before it is queued.
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": err.Error(), "field": "recipients", "accepted": res.Accepted, "suppressed": res.Suppressed})
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (h *handler) listDeliveries(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"deliveries": h.d.Deliveries.Deliveries()})
}

func (h *handler) getDelivery(w http.ResponseWriter, r *http.Request) {
	v, ok := h.d.Deliveries.Delivery(r.PathValue("id"))
	if !ok {
		writeErr(w, http.StatusNotFound, "unknown delivery "+r.PathValue("id"), "id")
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (h *handler) cancelDelivery(w http.ResponseWriter, r *http.Request) {
	n, err := h.d.Deliveries.CancelDelivery(r.PathValue("id"), "api")
	if err != nil {
		writeBackendErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": r.PathValue("id"), "cancelled": n})
}

// suspension suspends (on) or resumes the tenant or campaign named by the
// path parameter param.
func (h *handler) suspension(kind, param string, on bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue(param)
		n, err := h.d.Queue.SetSuspended(kind, name, "api", on)
		if errors.Is(err, queue.ErrBadSuspension) {
			writeErr(w, http.StatusBadRequest, err.Error(), param)
			return
		}
		if err != nil {
			writeBackendErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"kind": kind, "name": name, "suspended": on, "recipients": n})
	}
}

func writeBackendErr(w http.ResponseWriter, err error) {
	var fe *FieldError
	var ne *NotFoundError
	switch {
	case errors.As(err, &fe):
		writeErr(w, http.StatusBadRequest, err.Error(), fe.Field)
	case errors.As(err, &ne):
		writeErr(w, http.StatusNotFound, err.Error(), "id")
	default:
		writeErr(w, http.StatusServiceUnavailable, fmt.Sprintf("not stored, try again: %v", err), "")
	}
}
