package config

import (
	"strings"
	"testing"
	"time"
)

func TestTLSRPT(t *testing.T) {
	d := mustParse(t, "d.toml", "")
	if d.TLSRPT.Enabled || d.TLSRPT.SendAt != "00:30" {
		t.Fatalf("defaults %+v", d.TLSRPT)
	}
	c := mustParse(t, "t.toml", "[tlsrpt]\nenabled = true\norganization = \"Acme\"\ncontact = \"tls@acme.example\"\nsend_at = \"23:05\"\n")
	if off, err := c.TLSRPT.SendAtOffset(); err != nil || off != 23*time.Hour+5*time.Minute || !c.TLSRPT.Enabled {
		t.Fatalf("%+v %v %v", c.TLSRPT, off, err)
	}
	for _, bad := range []string{"24:00", "0:30", "00:60", "noon", "00:30Z"} {
		_, err := Parse("t.toml", []byte("\n[tlsrpt]\nsend_at = \""+bad+"\"\n"))
		if err == nil || !strings.Contains(err.Error(), "t.toml:3:") || !strings.Contains(err.Error(), "send_at") {
			t.Errorf("send_at %q: %v", bad, err)
		}
	}
}

func TestTLSFailureMemory(t *testing.T) {
	if d := mustParse(t, "d.toml", ""); d.Delivery.TLSFailureMemory != Duration(time.Hour) {
		t.Fatalf("default %v", d.Delivery.TLSFailureMemory)
	}
	if c := mustParse(t, "t.toml", "[delivery]\ntls_failure_memory = \"0s\"\n"); c.Delivery.TLSFailureMemory != 0 {
		t.Fatalf("0s: %v", c.Delivery.TLSFailureMemory)
	}
	_, err := Parse("t.toml", []byte("[delivery]\ntls_failure_memory = \"-1m\"\n"))
	if err == nil || !strings.Contains(err.Error(), "t.toml:2:") || !strings.Contains(err.Error(), "tls_failure_memory") {
		t.Fatalf("negative: %v", err)
	}
}
