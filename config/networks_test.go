package config

import (
	"net/netip"
	"strings"
	"testing"
)

// TestOpenRelaySpellings replays the open-relay attack: allowed_networks
// written so that it holds every address, in each spelling an operator (or
// an attacker with write access to a config template) might use. Each must
// be refused, by Parse and so by `penstock check`.
func TestOpenRelaySpellings(t *testing.T) {
	for _, nets := range []string{
		`"0.0.0.0/0"`,
		`"::/0"`,
		`"::ffff:0.0.0.0/96"`,
		`"::ffff:0:0/96"`,
		`"::ffff:1.2.3.4/96"`,                // host bits set
		`"::ffff:0.0.0.0/95"`,                // wider than the mapped range
		`"::/80"`,                            // holds the mapped range
		`"1.2.3.4/0"`,                        // host bits set
		`"0.0.0.0/1", "128.0.0.0/1"`,         // two halves
		`"::ffff:0.0.0.0/97", "128.0.0.0/1"`, // halves in two spellings
		`"::/1", "8000::/1"`,
		`"10.0.0.0/8", "0.0.0.0/2", "64.0.0.0/2", "128.0.0.0/1"`,
	} {
		doc := "[smtp]\nallowed_networks = [" + nets + "]\n"
		_, err := Parse("relay.toml", []byte(doc))
		if err == nil {
			t.Errorf("allowed_networks = [%s] accepted: an open relay", nets)
			continue
		}
		if !strings.Contains(err.Error(), "relay.toml:2: ") || !strings.Contains(err.Error(), "open relay") {
			t.Errorf("allowed_networks = [%s]: %v, want relay.toml:2: ... open relay", nets, err)
		}
	}
}

func TestNarrowNetworksAccepted(t *testing.T) {
	for _, nets := range []string{
		`"0.0.0.0/1"`,
		`"::ffff:10.0.0.0/104"`,
		`"10.0.0.0/8", "192.168.0.0/16", "::1/128", "fd00::/8"`,
		`"0.0.0.0/1", "128.0.0.0/2"`,
		`"::/96"`, // IPv4-compatible, deprecated: not the IPv4 clients
	} {
		if _, err := Parse("ok.toml", []byte("[smtp]\nallowed_networks = ["+nets+"]\n")); err != nil {
			t.Errorf("allowed_networks = [%s]: %v", nets, err)
		}
	}
}

func TestNormalizePrefix(t *testing.T) {
	for in, want := range map[string]string{
		"10.1.2.3/8":           "10.0.0.0/8",
		"::ffff:10.1.2.3/104":  "10.0.0.0/8",
		"::ffff:127.0.0.1/128": "127.0.0.1/32",
		"::ffff:0.0.0.0/96":    "0.0.0.0/0",
		"::ffff:0.0.0.0/95":    "::fffe:0:0/95",
		"2001:db8::1/32":       "2001:db8::/32",
	} {
		p, err := ParsePrefix(in)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if p.String() != want {
			t.Errorf("ParsePrefix(%s) = %s, want %s", in, p, want)
		}
		// A client address inside the spelling matches the normal form
		// once unmapped, as the listeners unmap it.
		a := netip.MustParsePrefix(in).Masked().Addr()
		if !p.Contains(a.Unmap()) {
			t.Errorf("%s: %s does not hold %s", in, p, a.Unmap())
		}
	}
}
