package sim

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
)

// World is a simulated Internet on loopback: one DNS server and any number
// of receiving providers, each on its own 127.0.x.y addresses, all on one
// SMTP port (Penstock's [delivery] port points there).
type World struct {
	DNS  *DNSServer
	Port int

	// hold keeps Port taken on 127.0.0.1 while the world lives: the
	// providers listen on 127.0.1.x, where FreePort does not look, so
	// without it a world made meanwhile (tests run in parallel) could
	// pick the same port and find its providers' addresses taken.
	hold net.Listener

	mu        sync.Mutex
	next      int // next host number for provider addresses
	providers []*Provider
}

// NewWorld starts the DNS server and picks the SMTP port.
func NewWorld() (*World, error) {
	d, err := NewDNSServer("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	var hold net.Listener
	for range 20 {
		port, err := FreePort()
		if err != nil {
			d.Close()
			return nil, err
		}
		// Taken again between FreePort's close and here: try another.
		if hold, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
			return &World{DNS: d, Port: port, hold: hold, next: 20}, nil
		}
	}
	d.Close()
	return nil, errors.New("sim: no SMTP port for the world after 20 tries")
}

// Nameserver is the address to put in [dns] nameservers.
func (w *World) Nameserver() string { return w.DNS.Addr() }

// nextIP hands out 127.0.1.20, 127.0.1.21, ... (127.0.0.x stays free for
// sources and injection).
func (w *World) nextIP() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := w.next
	w.next++
	return "127.0." + strconv.Itoa(1+n/250) + "." + strconv.Itoa(n%250+1)
}

// AddProvider starts a provider with one address per MX host and publishes
// the MX records of its domains (preferences 10, 20, ... in the order
// given) and the A record of each host.
func (w *World) AddProvider(b Behavior, domains []string, mxHosts ...string) (*Provider, error) {
	if len(mxHosts) == 0 {
		return nil, errors.New("sim: a provider needs at least one MX host")
	}
	var addrs []string
	for _, h := range mxHosts {
		ip := w.nextIP()
		addrs = append(addrs, net.JoinHostPort(ip, strconv.Itoa(w.Port)))
		w.DNS.SetA(h, ip)
	}
	p, err := NewProvider(b, addrs...)
	if err != nil {
		return nil, fmt.Errorf("sim: provider %s: %w", b.Name, err)
	}
	mx := make([]MXRecord, len(mxHosts))
	for i, h := range mxHosts {
		mx[i] = MXRecord{Host: h, Pref: uint16(10 * (i + 1))}
	}
	for _, d := range domains {
		w.DNS.SetMX(d, mx...)
	}
	w.mu.Lock()
	w.providers = append(w.providers, p)
	w.mu.Unlock()
	return p, nil
}

// Close stops every provider and the DNS server.
func (w *World) Close() error {
	w.mu.Lock()
	ps := w.providers
	w.providers = nil
	w.mu.Unlock()
	var errs []error
	for _, p := range ps {
		errs = append(errs, p.Close())
	}
	errs = append(errs, w.DNS.Close(), w.hold.Close())
	return errors.Join(errs...)
}
