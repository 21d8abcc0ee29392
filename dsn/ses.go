package dsn

import (
	"bytes"
	"encoding/json"
	"strings"
)

// sesNotification reads an Amazon SES notification delivered by e-mail
// (through SNS): a JSON object with notificationType Bounce, Complaint or
// Delivery, as documented at
// https://docs.aws.amazon.com/ses/latest/dg/notification-contents.html.
// It reports whether text was one.
func (r *Report) sesNotification(text []byte) bool {
	t := bytes.TrimSpace(text)
	if len(t) == 0 || t[0] != '{' || !bytes.Contains(t, []byte(`"notificationType"`)) {
		return false
	}
	// SNS appends an unsubscribe footer after the object.
	var n struct {
		NotificationType string `json:"notificationType"`
		Bounce           struct {
			BouncedRecipients []struct {
				EmailAddress   string `json:"emailAddress"`
				Action         string `json:"action"`
				Status         string `json:"status"`
				DiagnosticCode string `json:"diagnosticCode"`
			} `json:"bouncedRecipients"`
			ReportingMTA string `json:"reportingMTA"`
		} `json:"bounce"`
		Complaint struct {
			ComplainedRecipients []struct {
				EmailAddress string `json:"emailAddress"`
			} `json:"complainedRecipients"`
			ComplaintFeedbackType string `json:"complaintFeedbackType"`
			UserAgent             string `json:"userAgent"`
		} `json:"complaint"`
		Delivery struct {
			Recipients   []string `json:"recipients"`
			SMTPResponse string   `json:"smtpResponse"`
			ReportingMTA string   `json:"reportingMTA"`
		} `json:"delivery"`
	}
	if err := json.NewDecoder(bytes.NewReader(t)).Decode(&n); err != nil {
		return false
	}
	switch strings.ToLower(n.NotificationType) {
	case "bounce":
		r.Reporter = stripType(n.Bounce.ReportingMTA)
		for _, b := range n.Bounce.BouncedRecipients {
			if len(r.Recipients) >= maxRecipients {
				break
			}
			rs := RecipientStatus{Final: stripAddr(b.EmailAddress), Action: strings.ToLower(b.Action),
				Status: b.Status, Diagnostic: clip(b.DiagnosticCode)}
			fillStatus(&rs)
			r.Recipients = append(r.Recipients, rs)
		}
	case "complaint":
		ft := strings.ToLower(n.Complaint.ComplaintFeedbackType)
		if ft == "" {
			ft = "abuse" // SES leaves it out when the provider did
		}
		r.Feedback = &Feedback{Type: ft, UserAgent: n.Complaint.UserAgent}
		for _, c := range n.Complaint.ComplainedRecipients {
			if len(r.complainants) < maxRecipients {
				r.complainants = append(r.complainants, stripAddr(c.EmailAddress))
			}
		}
		if len(r.complainants) > 0 {
			r.Feedback.OriginalRcptTo = r.complainants[0]
		}
		r.Kind = KindARF
		return true
	case "delivery":
		r.Reporter = stripType(n.Delivery.ReportingMTA)
		for _, a := range n.Delivery.Recipients {
			if len(r.Recipients) >= maxRecipients {
				break
			}
			rs := RecipientStatus{Final: stripAddr(a), Action: "delivered", Diagnostic: clip(n.Delivery.SMTPResponse)}
			fillStatus(&rs)
			r.Recipients = append(r.Recipients, rs)
		}
	default:
		return false
	}
	if len(r.Recipients) == 0 {
		return false
	}
	r.Kind = KindDSN
	return true
}
