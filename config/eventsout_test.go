package config

import (
	"strings"
	"testing"
	"time"
)

func TestEventsOutDefaults(t *testing.T) {
	c, err := Parse("p.toml", []byte("[[webhook]]\nname = \"crm\"\nurl = \"https://crm.example.com/hook\"\n\n[[stream]]\nname = \"bus\"\ntype = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\n\n[postgres]\ndsn = \"postgres://127.0.0.1/test\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	w := c.Webhooks[0]
	if w.BatchSize != 100 || time.Duration(w.BatchTime) != time.Second || time.Duration(w.Timeout) != 10*time.Second {
		t.Errorf("webhook defaults: %+v", w)
	}
	if s := c.Streams[0]; s.SubjectPrefix != "penstock" || s.Exchange != "penstock" || s.BatchSize != 100 {
		t.Errorf("stream defaults: %+v", s)
	}
	if c.Postgres.Schema != "penstock" || c.Postgres.BatchSize != 1000 {
		t.Errorf("postgres defaults: %+v", c.Postgres)
	}
}

func TestEventsOutErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"[[webhook]]\nname = \"a\"\nurl = \"ftp://x\"\n", `bad.toml:3: [[webhook]] "a" url: "ftp://x" is not an http:// or https:// URL`},
		{"[[webhook]]\nname = \"a\"\nurl = \"http://x\"\nevents = [\"Delivered\"]\n", `bad.toml:4: [[webhook]] "a" events #1: "Delivered" is not a record type`},
		{"[[webhook]]\nname = \"a\"\nurl = \"http://x\"\n[[webhook]]\nname = \"a\"\nurl = \"http://y\"\n", `bad.toml:5: [[webhook]] "a" name: "a" is already the name`},
		{"[[stream]]\nname = \"s\"\ntype = \"kafka\"\nurl = \"x://y\"\n", `bad.toml:3: [[stream]] "s" type: "kafka" is not a stream type`},
		{"[[stream]]\nname = \"s\"\ntype = \"nats\"\nurl = \"nats://h:4222\"\nsubject_prefix = \"a.>\"\n", `bad.toml:5: [[stream]] "s" subject_prefix`},
		{"[postgres]\ndsn = \"postgres://h/db\"\nschema = \"Bad-Name\"\n", `bad.toml:3: [postgres] schema: "Bad-Name" is not a plain SQL name`},
	} {
		_, err := Parse("bad.toml", []byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.doc, err, tc.want)
		}
	}
}
