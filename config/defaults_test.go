package config

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/mxrule"
)

// TestRuleDefaultsInForce: a rule's unset or zero limits take the values
// mxrule decides, and the effective configuration (`penstock check`)
// prints those, not the zeros that were written.
func TestRuleDefaultsInForce(t *testing.T) {
	c, err := Parse("r.toml", []byte(`
[[mx_rule]]
name = "zeros"
mx = "*.example.com"
max_connections = 0
max_messages_per_connection = 0
messages_per_hour = 0
`))
	if err != nil {
		t.Fatal(err)
	}
	r, def := c.MXRules[0], mxrule.Default()
	if r.MaxConnections != 10 || r.MaxMessagesPerConnection != 100 || r.MessagesPerHour != 0 ||
		r.ConnectTimeout.Std() != 30*time.Second || r.CommandTimeout.Std() != 5*time.Minute ||
		r.DataTimeout.Std() != 10*time.Minute || r.TLS != "default" || r.Scope != "source" {
		t.Errorf("rule defaults in force: %+v", r)
	}
	if r.MaxConnections != def.MaxConnections || r.MaxMessagesPerConnection != def.MaxMessagesPerConnection ||
		r.ConnectTimeout.Std() != def.ConnectTimeout || r.TLS != def.TLS {
		t.Errorf("config's rule defaults differ from mxrule's catch-all: %+v vs %+v", r, def)
	}
	var b bytes.Buffer
	if err := c.WriteEffective(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"max_connections = 10\n", "max_messages_per_connection = 100\n", "messages_per_hour = 0\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("effective configuration lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "max_messages_per_connection = 0") {
		t.Error("effective configuration prints the 0 that was written, not the value in force")
	}
	if c.Server.TLS != mxrule.DefaultServerTLS {
		t.Errorf("[server] tls default %q, mxrule says %q", c.Server.TLS, mxrule.DefaultServerTLS)
	}
}
