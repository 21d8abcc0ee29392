package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Event outputs: [[webhook]], [[stream]] and [postgres] each follow the
// delivery log with a durable cursor of their own (package eventsout).

// Stream output types.
const (
	StreamAMQP = "amqp"
	StreamNATS = "nats"
)

// Webhook is one [[webhook]]: records POSTed as a JSON array to url.
type Webhook struct {
	Name      string   `toml:"name"`
	URL       string   `toml:"url"`        // http:// or https:// (verified against the system roots)
	Events    []string `toml:"events"`     // record types to send; empty = all
	BatchSize int      `toml:"batch_size"` // records per POST, default 100
	BatchTime Duration `toml:"batch_time"` // wait this long for a batch to fill, default 1s
	Secret    string   `toml:"secret"`     // HMAC-SHA256 key for X-Penstock-Signature; "" = unsigned
	Timeout   Duration `toml:"timeout"`    // per POST, default 10s
}

// Stream is one [[stream]]: records published to a broker.
type Stream struct {
	Name          string   `toml:"name"`
	Type          string   `toml:"type"`           // amqp | nats
	URL           string   `toml:"url"`            // amqp://user:pass@host:5672/vhost or nats://host:4222
	Events        []string `toml:"events"`         // record types to publish; empty = all
	Exchange      string   `toml:"exchange"`       // amqp: topic exchange, declared durable; default "penstock"
	SubjectPrefix string   `toml:"subject_prefix"` // nats: subject = prefix.<type>; default "penstock"
	JetStream     string   `toml:"jetstream"`      // nats: stream created for prefix.> if missing; "" = must exist
	BatchSize     int      `toml:"batch_size"`     // records per confirmed batch, default 100
}

// Postgres is [postgres]: the delivery log copied into PostgreSQL.
type Postgres struct {
	DSN       string `toml:"dsn"`        // "" = off
	Schema    string `toml:"schema"`     // default "penstock"
	BatchSize int    `toml:"batch_size"` // records per COPY, default 1000
}

func (w *Webhook) applyDefaults() {
	if w.BatchSize == 0 {
		w.BatchSize = 100
	}
	if w.BatchTime == 0 {
		w.BatchTime = Duration(time.Second)
	}
	if w.Timeout == 0 {
		w.Timeout = Duration(10 * time.Second)
	}
}

func (s *Stream) applyDefaults() {
	if s.Exchange == "" {
		s.Exchange = "penstock"
	}
	if s.SubjectPrefix == "" {
		s.SubjectPrefix = "penstock"
	}
	if s.BatchSize == 0 {
		s.BatchSize = 100
	}
}

func (c *Config) eventsOutDefaults() {
	for i := range c.Webhooks {
		c.Webhooks[i].applyDefaults()
	}
	for i := range c.Streams {
		c.Streams[i].applyDefaults()
	}
}

// recordTypes returns the delivery log's record types (package events).
func recordTypes() []string {
	return []string{"Reception", "Delivery", "TransientFailure", "Bounce", "Expiration",
		"Suppressed", "AdminAction", "FlowControl", "LocalProblem", "Complaint"}
}

func (v *validator) eventsOut(hooks []Webhook, streams []Stream, pg *Postgres) {
	names := map[string]bool{}
	name := func(at place, n string) {
		switch {
		case !outputName(n):
			v.errf(at, "name", "%q is not a name (letters, digits, '-', '_', 1 to 64)", n)
		case names[n]:
			v.errf(at, "name", "%q is already the name of another [[webhook]] or [[stream]]", n)
		}
		names[n] = true
	}
	types := func(at place, list []string) {
		for j, t := range list {
			if !oneOf(t, recordTypes()...) {
				v.errf(at, elem("events", j), "%q is not a record type (%s)", t, strings.Join(recordTypes(), ", "))
			}
		}
	}
	for i, w := range hooks {
		at := entry("webhook", i, w.Name)
		name(at, w.Name)
		if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.errf(at, "url", "%q is not an http:// or https:// URL", w.URL)
		}
		types(at, w.Events)
		v.atLeast(at, "batch_size", w.BatchSize, 1)
		v.positive(at, "batch_time", w.BatchTime)
		v.positive(at, "timeout", w.Timeout)
	}
	for i, s := range streams {
		at := entry("stream", i, s.Name)
		name(at, s.Name)
		u, err := url.Parse(s.URL)
		switch s.Type {
		case StreamAMQP:
			if err != nil || (u.Scheme != "amqp" && u.Scheme != "amqps") || u.Host == "" {
				v.errf(at, "url", "%q is not an amqp:// or amqps:// URL", s.URL)
			}
		case StreamNATS:
			if err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Host == "" {
				v.errf(at, "url", "%q is not a nats:// or tls:// URL", s.URL)
			}
			if strings.ContainsAny(s.SubjectPrefix, " *>") || strings.HasPrefix(s.SubjectPrefix, ".") || strings.HasSuffix(s.SubjectPrefix, ".") {
				v.errf(at, "subject_prefix", "%q is not a subject prefix (tokens separated by '.', no wildcards)", s.SubjectPrefix)
			}
		default:
			v.errf(at, "type", "%q is not a stream type: amqp or nats", s.Type)
		}
		types(at, s.Events)
		v.atLeast(at, "batch_size", s.BatchSize, 1)
	}
	if pg.DSN != "" {
		at := table("postgres")
		if !sqlIdent(pg.Schema) {
			v.errf(at, "schema", "%q is not a plain SQL name (lower-case letters, digits, '_')", pg.Schema)
		}
		v.atLeast(at, "batch_size", pg.BatchSize, 1)
	}
}

func outputName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func sqlIdent(s string) bool {
	if s == "" || len(s) > 63 || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// Webhook returns the [[webhook]] called name.
func (c *Config) Webhook(name string) (Webhook, error) {
	for _, w := range c.Webhooks {
		if w.Name == name {
			return w, nil
		}
	}
	return Webhook{}, fmt.Errorf("no [[webhook]] named %q", name)
}
