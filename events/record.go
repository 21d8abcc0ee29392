package events

import "time"

// Type names an event. The values are the record types of the delivery log
// (docs/ARCHITECTURE.md §4); operators grep for them, so they never change.
type Type string

const (
	Reception        Type = "Reception"        // a message was accepted and spooled
	Delivery         Type = "Delivery"         // a recipient was accepted by the remote MX (2xx)
	TransientFailure Type = "TransientFailure" // an attempt failed; the recipient stays queued
	Bounce           Type = "Bounce"           // a recipient failed permanently
	Expiration       Type = "Expiration"       // a recipient's validity period ran out
	Suppressed       Type = "Suppressed"       // a recipient was not sent to: the address is quarantined
	AdminAction      Type = "AdminAction"      // an operator suspended, resumed, retried or purged
	FlowControl      Type = "FlowControl"      // a site's or path's flow state changed
	LocalProblem     Type = "LocalProblem"     // errors across many destinations at once: ours, not theirs
	Complaint        Type = "Complaint"        // a feedback-loop report (RFC 5965) about a recipient
	QuotaWait        Type = "QuotaWait"        // a periodic sample: a site's mail waits on a connection or hourly quota
)

// Record is one line of the delivery log. Empty fields are left out of the
// JSON, except type and time. The field order here is the key order on disk.
type Record struct {
	Type         Type      `json:"type"`
	Time         time.Time `json:"time"`
	ID           string    `json:"id,omitempty"` // message id
	DeliveryID   string    `json:"delivery_id,omitempty"`
	Sender       string    `json:"sender,omitempty"`
	Recipient    string    `json:"recipient,omitempty"`
	Site         string    `json:"site,omitempty"`
	MXHost       string    `json:"mx_host,omitempty"`
	MXIP         string    `json:"mx_ip,omitempty"`
	SourceIP     string    `json:"source_ip,omitempty"`
	Rule         string    `json:"rule,omitempty"`
	Code         int       `json:"code,omitempty"`
	EnhancedCode string    `json:"enhanced_code,omitempty"`
	Text         string    `json:"text,omitempty"`
	Reason       string    `json:"reason,omitempty"`
	Class        string    `json:"class,omitempty"`
	Attempt      int       `json:"attempt,omitempty"`
	Status       string    `json:"status,omitempty"`
	Detail       string    `json:"detail,omitempty"`
	State        string    `json:"state,omitempty"` // flow state for FlowControl records
	Size         int64     `json:"size,omitempty"`
	TLS          bool      `json:"tls,omitempty"`
	// TLSInfo is the TLS version and cipher suite of a delivery, and
	// "verified" when the certificate verified for the MX host name (or
	// matched the host's DANE TLSA records).
	TLSInfo string `json:"tls_info,omitempty"`
	// TLSPolicy is the transport security policy the attempt was made
	// under: "dane enforce", "sts enforce", "sts testing", or "rule " and
	// the MX rule's tls when the domain has no policy.
	TLSPolicy string `json:"tls_policy,omitempty"`
	// ConnUse is the attempt's place among the transactions of its
	// connection (Postfix's conn_use): 1 on a connection opened for it,
	// more on one reused, perhaps opened for another domain at the same
	// MX address; 0 when no connection was made.
	ConnUse int `json:"conn_use,omitempty"`
}
