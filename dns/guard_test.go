package dns

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/penstock-mta/penstock/sim"
)

type guardClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *guardClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *guardClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func guarded(t *testing.T) (*sim.DNSServer, Resolver, *guardClock) {
	t.Helper()
	s, r := world(t)
	for _, d := range []string{"canary.test", "gmail.test", "a.test"} {
		s.SetMX(d, sim.MXRecord{Pref: 10, Host: "mx." + d})
		s.SetA("mx."+d, "127.0.0.1")
	}
	ck := &guardClock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	return s, NewGuard(r, GuardConfig{Canaries: []string{"canary.test"}, Now: ck.Now}), ck
}

// A resolver answering NXDOMAIN for everything does not make real
// domains bounce: the canaries fail too, so the answers become temporary
// errors (mail waits as MX lookup failed) instead of permanent ones.
func TestGuardResolverNXDOMAINForEverything(t *testing.T) {
	s, g, ck := guarded(t)
	if _, err := g.LookupMX(ctxT(t), "gmail.test"); err != nil {
		t.Fatal(err)
	}
	// One unknown domain on a healthy resolver: NXDOMAIN stands.
	_, err := g.LookupMX(ctxT(t), "typo.test")
	wantErr(t, err, NXDomain)

	s.SetFailAll(mdns.RcodeNameError) // the resolver goes bad
	ck.Add(healthyTTL + time.Second)  // past the last healthy verdict
	// A domain that resolved recently: suspect, canaries fail, temporary.
	_, err = g.LookupMX(ctxT(t), "gmail.test")
	e := wantErr(t, err, Temporary)
	if !errors.Is(e, ErrResolverSuspect) {
		t.Fatalf("cause %v", e.Err)
	}
	// Never-seen domains are not believed either while the canaries fail.
	for i := 0; i < 5; i++ {
		_, err = g.LookupMX(ctxT(t), fmt.Sprintf("user%d.test", i))
		wantErr(t, err, Temporary)
	}
	// The resolver heals: after the canary verdict expires, a real
	// NXDOMAIN is believed again.
	s.SetFailAll(0)
	ck.Add(canaryTTL + time.Second)
	if _, err := g.LookupMX(ctxT(t), "gmail.test"); err != nil {
		t.Fatal(err)
	}
	_, err = g.LookupMX(ctxT(t), "typo2.test")
	wantErr(t, err, NXDomain)
}

// A dirty list (many domains that really do not exist) bounces as
// before: the spike asks the canaries, which resolve.
func TestGuardDirtyListStillBounces(t *testing.T) {
	_, g, _ := guarded(t)
	for i := 0; i < 10; i++ {
		_, err := g.LookupMX(ctxT(t), fmt.Sprintf("gone%d.test", i))
		wantErr(t, err, NXDomain)
	}
}

// The root zone's NS as a canary: asked as NS, not MX.
func TestGuardRootCanary(t *testing.T) {
	s, r := world(t)
	g := NewGuard(r, GuardConfig{Canaries: []string{"."}})
	// The simulated DNS serves no NS for the root: the canary fails and
	// the NXDOMAIN is not believed.
	_, err := g.LookupMX(ctxT(t), "typo.test")
	wantErr(t, err, Temporary)
	_ = s
}

func TestGuardOffWithoutCanaries(t *testing.T) {
	_, r := world(t)
	if g := NewGuard(r, GuardConfig{Canaries: []string{}}); g != r {
		t.Fatal("an empty canary list should leave the resolver as it is")
	}
}
