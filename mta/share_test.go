package mta_test

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/sim"
)

// TestHostedDomainsShareConnections: 30 domains hosted by one provider,
// each with an MX name of its own at the provider's one address (as
// Microsoft 365 names a tenant's MX), and a provider serving 4 sessions at
// once. Their mail goes over a few connections carried from domain to
// domain, as Postfix's connection cache does, not over one or more per
// domain closed for each other (before: about a connection per message).
// Real SMTP, real DNS on loopback.
func TestHostedDomainsShareConnections(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	const domains, n = 30, 150
	p, err := w.AddProvider(sim.Behavior{Name: "hosted", MaxSessions: 4}, []string{"d0.test"}, "d0.mx.hosted.test")
	if err != nil {
		t.Fatal(err)
	}
	ip, _, err := net.SplitHostPort(p.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < domains; i++ {
		host := fmt.Sprintf("d%d.mx.hosted.test", i)
		w.DNS.SetMX(fmt.Sprintf("d%d.test", i), sim.MXRecord{Host: host, Pref: 10})
		w.DNS.SetA(host, ip)
	}
	h := newHarness(t, w, nil)
	h.sendMany(n, 4, func(i int) string { return fmt.Sprintf("user%d@d%d.test", i, i%domains) })
	waitDelivered(t, p, n, 60*time.Second)
	waitFor(t, 10*time.Second, "delivery records", func() bool { return countType(h.records(), events.Delivery) == n })

	st := p.Stats()
	t.Logf("%d messages to %d domains over %d connections (at most %d at once)", n, domains, st.Connections, st.MaxOpen)
	if st.Connections > 20 {
		t.Errorf("the provider saw %d connections for %d messages, want at most 20: connections are not shared across its domains",
			st.Connections, n)
	}
	// The delivery log shows it: transactions deep into their connection
	// (conn_use), each for a site other than the connection's first.
	reused := map[string]bool{}
	for _, r := range h.records() {
		if r.Type == events.Delivery && r.ConnUse > 1 {
			reused[r.Site] = true
		}
	}
	if len(reused) < domains/2 {
		t.Errorf("deliveries on a reused connection at %d sites of %d, want most", len(reused), domains)
	}
}
