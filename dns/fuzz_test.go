package dns

import (
	"strings"
	"testing"

	mdns "github.com/miekg/dns"
)

// FuzzDNSReply feeds arbitrary bytes to everything that reads a reply. The
// ID and question are patched to match the query when the input is long
// enough, so the fuzzer reaches the answer parsing, not only the checks.
// Nothing may panic, and what comes out must respect the limits.
func FuzzDNSReply(f *testing.F) {
	q := new(mdns.Msg)
	q.SetQuestion("fuzz.test.", mdns.TypeMX)
	seed := func(rrs ...string) {
		m := reply(q, rrs...)
		m.Ns = append(m.Ns, &mdns.SOA{Hdr: mdns.RR_Header{Name: "fuzz.test.", Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: 60}, Ns: "ns.test.", Mbox: "h.test.", Minttl: 30})
		f.Add(pack(f, m))
	}
	seed("fuzz.test. 60 IN MX 10 mx1.fuzz.test.", "fuzz.test. 60 IN MX 10 mx2.fuzz.test.", "fuzz.test. 60 IN MX 20 mx3.fuzz.test.")
	seed("fuzz.test. 60 IN MX 0 .")
	seed("fuzz.test. 60 IN CNAME a.test.", "a.test. 60 IN CNAME b.test.", "b.test. 60 IN MX 5 mx.b.test.")
	seed("fuzz.test. 60 IN CNAME fuzz.test.")
	seed(`fuzz.test. 60 IN MX 1 evil\032name.`, "fuzz.test. 60 IN A 127.0.0.1", "fuzz.test. 60 IN AAAA ::")
	seed("fuzz.test. 60 IN TLSA 3 1 1 0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20")
	seed()
	f.Add([]byte{})
	f.Add([]byte("\x00\x01\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00garbage"))

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) >= 2 {
			data = append([]byte(nil), data...)
			data[0], data[1] = byte(q.Id>>8), byte(q.Id)
		}
		r := new(mdns.Msg)
		if err := r.Unpack(data); err != nil {
			return
		}
		if len(r.Question) == 1 {
			r.Question[0] = q.Question[0]
		}
		_ = checkReply(q, r)
		_ = negativeTTL(r)
		hosts, null, _, err := parseMX(r, "fuzz.test.")
		if err == nil && !null {
			if len(hosts) > maxMXHosts {
				t.Fatalf("%d MX hosts kept", len(hosts))
			}
			for i, h := range hosts {
				if checkHostname(h.Host) != nil || (i > 0 && h.Pref < hosts[i-1].Pref) {
					t.Fatalf("bad host list %v", hosts)
				}
			}
		}
		if recs, _, err := parseTLSA(r, "fuzz.test."); err == nil && len(recs) > maxTLSA {
			t.Fatalf("%d TLSA records kept", len(recs))
		}
		for _, qt := range []uint16{mdns.TypeA, mdns.TypeAAAA} {
			addrs, _, err := parseAddrs(r, "fuzz.test.", qt)
			if err == nil && len(addrs) > maxAddrs {
				t.Fatalf("%d addresses kept", len(addrs))
			}
			for _, a := range addrs {
				if !a.IsValid() || a.IsUnspecified() {
					t.Fatalf("bad address %v", a)
				}
			}
		}
	})
}

// FuzzDNSName checks the name validation: what it accepts is lowercase
// ASCII within the RFC 1035 limits, and accepting is stable.
func FuzzDNSName(f *testing.F) {
	for _, s := range []string{"example.com", "Example.COM.", "a..b", "", ".", "bücher.test", "xn--bcher-kva.test",
		"_dmarc.example.com", strings.Repeat("a", 64) + ".com", strings.Repeat("a.", 127) + "a", "a b.test", "\xff", "ⓔⓧⓐⓜⓟⓛⓔ.com"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := normalizeName(s)
		if err != nil {
			return
		}
		if len(n) == 0 || len(n) > maxNameLen || n != strings.ToLower(n) || !isASCII(n) || strings.HasSuffix(n, ".") {
			t.Fatalf("normalizeName(%q) = %q", s, n)
		}
		for _, l := range strings.Split(n, ".") {
			if len(l) == 0 || len(l) > maxLabelLen {
				t.Fatalf("normalizeName(%q) = %q: bad label %q", s, n, l)
			}
		}
		if n2, err := normalizeName(n); err != nil || n2 != n {
			t.Fatalf("not stable: %q -> %q -> %q, %v", s, n, n2, err)
		}
		if _, err := mdns.PackDomainName(n+".", make([]byte, 512), 0, nil, false); err != nil {
			t.Fatalf("normalizeName(%q) = %q, which does not pack: %v", s, n, err)
		}
	})
}
