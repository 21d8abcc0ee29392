package mta_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/api"
	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/sim"
	"github.com/penstock-mta/penstock/tlsrpt"
)

// TestTLSFailureRemembered: an MX whose STARTTLS handshake breaks gets the
// first message in clear text after the failed handshake, and the next one
// (on a new connection) in clear text at once, without STARTTLS, while
// [delivery] tls_failure_memory lasts. With the memory off, every
// connection tries again. The skipped handshakes are still reported as TLS
// failures.
func TestTLSFailureRemembered(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		memory    time.Duration
		handshake int64 // STARTTLS commands the provider sees for 3 messages
	}{
		{time.Hour, 1},
		{0, 3},
	} {
		t.Run(fmt.Sprint("memory=", tc.memory), func(t *testing.T) {
			w := newWorld(t)
			p, err := w.AddProvider(sim.Behavior{Name: "broken", STARTTLS: true, BreakTLS: true}, []string{"broken.test"}, "mx.broken.test")
			if err != nil {
				t.Fatal(err)
			}
			oneEach := rule("one-each", "*.broken.test", "source", 1, 1, 0) // a new connection per message
			h := newHarness(t, w, both(withRules(oneEach), func(c *config.Config) {
				c.Delivery.TLSFailureMemory = config.Duration(tc.memory)
			}))
			for i := range 3 {
				to := fmt.Sprintf("u%d@broken.test", i)
				if err := h.send("sender@penstock.test", []string{to}, message("sender@penstock.test", to, fmt.Sprint("b", i), 256)); err != nil {
					t.Fatal(err)
				}
				// One at a time: each message's connection opens after
				// the previous one is over.
				waitDelivered(t, p, int64(i+1), 10*time.Second)
			}
			st := p.Stats()
			if st.StartTLSSeen != tc.handshake || st.TLSConns != 0 {
				t.Fatalf("STARTTLS seen %d times (want %d), %d TLS sessions", st.StartTLSSeen, tc.handshake, st.TLSConns)
			}
			var v api.TLSReportsView
			h.api("GET", "/api/v1/tlsrpt?domain=broken.test", &v)
			if len(v.Reports) != 1 {
				t.Fatalf("reports %+v", v.Reports)
			}
			pol := v.Reports[0].Report.Policies[0]
			if pol.Summary.Failed != 3 || pol.Summary.Successful != 0 || pol.FailureDetails[0].ResultType != tlsrpt.ValidationFailure {
				t.Fatalf("report %+v", pol)
			}
		})
	}
}
