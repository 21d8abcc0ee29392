package dsn

import (
	"bytes"
	"encoding/json"
	"strings"
)

// sesRecipient is one entry of an SES notification's recipient lists.
type sesRecipient struct {
	EmailAddress   string `json:"emailAddress"`
	Action         string `json:"action"`
	Status         string `json:"status"`
	DiagnosticCode string `json:"diagnosticCode"`
}

// sesNotification reads an Amazon SES notification delivered by e-mail
// (through SNS): a JSON object with notificationType Bounce, Complaint or
// Delivery, as documented at
// https://docs.aws.amazon.com/ses/latest/dg/notification-contents.html.
// It reports whether text was one. SNS appends an unsubscribe footer after
// the object and relays fold its long line, so each member is decoded where
// it starts rather than the whole object: damage elsewhere costs nothing.
func (r *Report) sesNotification(text []byte) bool {
	t := bytes.TrimSpace(text)
	if len(t) == 0 || t[0] != '{' || !bytes.Contains(t, []byte(`notificationType`)) {
		return false
	}
	if m := jsonValue[string](t, "Message"); strings.HasPrefix(m, "{") {
		t = []byte(m) // the raw SNS envelope: the notification is its Message
	} else if bytes.Contains(t, []byte(`\"notificationType\"`)) {
		// The same with the Message string broken by a fold: its
		// members still read once unescaped.
		t = bytes.ReplaceAll(t, []byte(`\"`), []byte(`"`))
	}
	switch strings.ToLower(jsonValue[string](t, "notificationType")) {
	case "bounce":
		r.Reporter = stripType(jsonValue[string](t, "reportingMTA"))
		for _, b := range jsonValue[[]sesRecipient](t, "bouncedRecipients") {
			if len(r.Recipients) >= maxRecipients {
				break
			}
			rs := RecipientStatus{Final: stripAddr(b.EmailAddress), Action: strings.ToLower(b.Action),
				Status: b.Status, Diagnostic: clip(b.DiagnosticCode)}
			fillStatus(&rs)
			r.Recipients = append(r.Recipients, rs)
		}
	case "complaint":
		ft := strings.ToLower(jsonValue[string](t, "complaintFeedbackType"))
		if ft == "" {
			ft = "abuse" // SES leaves it out when the provider did
		}
		r.Feedback = &Feedback{Type: ft, UserAgent: jsonValue[string](t, "userAgent")}
		for _, c := range jsonValue[[]sesRecipient](t, "complainedRecipients") {
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
		r.Reporter = stripType(jsonValue[string](t, "reportingMTA"))
		resp := clip(jsonValue[string](t, "smtpResponse"))
		for _, a := range jsonValue[[]string](t, "recipients") {
			if len(r.Recipients) >= maxRecipients {
				break
			}
			rs := RecipientStatus{Final: stripAddr(a), Action: "delivered", Diagnostic: resp}
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

// jsonValue decodes the value of the first member named key in the JSON
// text t, or returns the zero value.
func jsonValue[T any](t []byte, key string) T {
	var v T
	i := bytes.Index(t, []byte(`"`+key+`"`))
	if i < 0 {
		return v
	}
	rest := bytes.TrimLeft(t[i+len(key)+2:], " \t\r\n")
	if len(rest) == 0 || rest[0] != ':' {
		return v
	}
	_ = json.NewDecoder(bytes.NewReader(rest[1:])).Decode(&v)
	return v
}
