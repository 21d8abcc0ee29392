package dns

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"

	mdns "github.com/miekg/dns"
)

// Limits on what a reply may make us do. A hostile server controls every byte
// of a reply; these bound the work and the size of what we keep.
const (
	// maxCNAMEHops: longer chains are refused. RFC 1034 §3.6.2 discourages
	// chains at all; common resolvers give up around 8 to 12.
	maxCNAMEHops = 8
	// maxMXHosts: a domain's MX set is cut to its most preferred hosts. No
	// sender tries 100 MX hosts for one message; a huge set is a mistake or
	// an attack, and its tail is never reached anyway.
	maxMXHosts = 20
	// maxAddrs: addresses kept per family for one host.
	maxAddrs = 32
	// maxTXT: TXT records kept for one name. A DKIM key or a policy is one
	// record; a name with dozens is not one we need to read to the end.
	maxTXT = 32
)

// errHostile marks replies that break the protocol: wrong ID or question,
// garbled names, endless CNAME chains. They are Temporary, like any broken
// reply, but the message says what was wrong.
var errHostile = errors.New("malformed or hostile reply")

func hostile(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errHostile, fmt.Sprintf(format, args...))
}

// checkReply verifies that r is a reply to q: QR set, same ID, opcode and
// question (RFC 1035 §4.1.1, §7.3). A reply that fails is never used.
func checkReply(q, r *mdns.Msg) error {
	if !r.Response {
		return hostile("QR bit clear, the packet is not a reply")
	}
	if r.Id != q.Id {
		return hostile("reply ID %d does not match query ID %d", r.Id, q.Id)
	}
	if r.Opcode != q.Opcode {
		return hostile("reply opcode %d, query opcode %d", r.Opcode, q.Opcode)
	}
	if len(r.Question) == 0 {
		// Servers may send a bare header with an error rcode (REFUSED from
		// some public resolvers); it says nothing about any name, so it is
		// acceptable only as a failure.
		switch r.Rcode {
		case mdns.RcodeServerFailure, mdns.RcodeRefused, mdns.RcodeNotImplemented, mdns.RcodeFormatError:
			return nil
		}
		return hostile("reply has no question section")
	}
	if len(r.Question) != 1 {
		return hostile("reply has %d questions, expected 1", len(r.Question))
	}
	rq, qq := r.Question[0], q.Question[0]
	if !strings.EqualFold(rq.Name, qq.Name) || rq.Qtype != qq.Qtype || rq.Qclass != qq.Qclass {
		return hostile("reply is for %q %s, query was %q %s",
			rq.Name, mdns.Type(rq.Qtype), qq.Name, mdns.Type(qq.Qtype))
	}
	return nil
}

// followAnswer returns the records of type qtype that answer qname (an FQDN,
// lowercased), following CNAMEs in the answer section (RFC 1034 §4.3.2 step
// 3a), and the smallest TTL of the records used. Records owned by other names
// are ignored: RFC 2181 §5.4.1 says not to trust data we did not ask for.
func followAnswer(r *mdns.Msg, qname string, qtype uint16) (rrs []mdns.RR, ttl uint32, err error) {
	ttl = math.MaxUint32
	name := qname
	for hops := 0; ; hops++ {
		var next string
		var nextTTL uint32
		for _, rr := range r.Answer {
			h := rr.Header()
			if h.Class != mdns.ClassINET || !strings.EqualFold(h.Name, name) {
				continue
			}
			switch {
			case h.Rrtype == qtype:
				rrs = append(rrs, rr)
				ttl = min(ttl, h.Ttl)
			case h.Rrtype == mdns.TypeCNAME && next == "":
				if c, ok := rr.(*mdns.CNAME); ok {
					next, nextTTL = strings.ToLower(c.Target), h.Ttl
				}
			}
		}
		if len(rrs) > 0 || next == "" {
			// RFC 2308 §2.2: a chain that ends with no records of qtype is
			// NODATA for the final name; the caller reads the rcode.
			return rrs, ttl, nil
		}
		if hops >= maxCNAMEHops {
			return nil, 0, hostile("CNAME chain from %q longer than %d", qname, maxCNAMEHops)
		}
		if err := checkHostname(strings.TrimSuffix(next, ".")); err != nil {
			return nil, 0, hostile("CNAME target %q: %v", next, err)
		}
		name, ttl = next, min(ttl, nextTTL)
	}
}

// parseMX reads the MX set answering qname (FQDN, lowercased). null reports a
// null MX (RFC 7505 §3: a single MX whose exchange is "."). Hosts come back
// sorted and shuffled (RFC 5321 §5.1), deduplicated, at most maxMXHosts.
// Records naming an absurd host are skipped; if nothing usable is left the
// reply is refused as hostile.
func parseMX(r *mdns.Msg, qname string) (hosts []MX, null bool, ttl uint32, err error) {
	rrs, ttl, err := followAnswer(r, qname, mdns.TypeMX)
	if err != nil {
		return nil, false, 0, err
	}
	var nulls int
	var bad string
	var badErr error
	best := make(map[string]int, len(rrs)) // host -> index in hosts
	for _, rr := range rrs {
		mx, ok := rr.(*mdns.MX)
		if !ok {
			continue
		}
		if mx.Mx == "." {
			// A "." among real MX records breaks RFC 7505 §3; it names no host,
			// so it is skipped and the real ones are used.
			nulls++
			continue
		}
		host := strings.ToLower(strings.TrimSuffix(mx.Mx, "."))
		if err := checkHostname(host); err != nil {
			bad, badErr = mx.Mx, err
			continue
		}
		if i, seen := best[host]; seen {
			hosts[i].Pref = min(hosts[i].Pref, mx.Preference)
			continue
		}
		best[host] = len(hosts)
		hosts = append(hosts, MX{Host: host, Pref: mx.Preference})
	}
	if len(hosts) == 0 && nulls > 0 && bad == "" {
		return nil, true, ttl, nil
	}
	if len(hosts) == 0 && bad != "" {
		return nil, false, 0, hostile("no usable MX host (%q: %v)", bad, badErr)
	}
	sortMX(hosts)
	if len(hosts) > maxMXHosts {
		hosts = hosts[:maxMXHosts:maxMXHosts]
	}
	return hosts, false, ttl, nil
}

// parseAddrs reads the A or AAAA records answering qname (FQDN, lowercased),
// deduplicated, at most maxAddrs. Unspecified addresses (0.0.0.0, ::) are
// dropped: connecting to them reaches this machine.
func parseAddrs(r *mdns.Msg, qname string, qtype uint16) ([]netip.Addr, uint32, error) {
	rrs, ttl, err := followAnswer(r, qname, qtype)
	if err != nil {
		return nil, 0, err
	}
	var out []netip.Addr
	for _, rr := range rrs {
		var ip netip.Addr
		var ok bool
		switch v := rr.(type) {
		case *mdns.A:
			if v4 := v.A.To4(); v4 != nil {
				ip, ok = netip.AddrFromSlice(v4)
			}
		case *mdns.AAAA:
			if len(v.AAAA) == 16 {
				ip, ok = netip.AddrFromSlice(v.AAAA)
			}
		}
		if !ok || ip.IsUnspecified() {
			continue
		}
		dup := false
		for _, o := range out {
			if o == ip {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, ip)
			if len(out) == maxAddrs {
				break
			}
		}
	}
	return out, ttl, nil
}

// parseTXT reads the TXT records answering qname (FQDN, lowercased), each
// record's character-strings joined into one string, at most maxTXT records.
func parseTXT(r *mdns.Msg, qname string) ([]string, uint32, error) {
	rrs, ttl, err := followAnswer(r, qname, mdns.TypeTXT)
	if err != nil {
		return nil, 0, err
	}
	var out []string
	for _, rr := range rrs {
		if t, ok := rr.(*mdns.TXT); ok {
			out = append(out, strings.Join(t.Txt, ""))
			if len(out) == maxTXT {
				break
			}
		}
	}
	return out, ttl, nil
}

// negativeTTL is how long a negative answer may be cached: RFC 2308 §5, the
// smaller of the SOA record's TTL and its MINIMUM field. 0 when the reply
// carries no SOA.
func negativeTTL(r *mdns.Msg) uint32 {
	for _, rr := range r.Ns {
		if soa, ok := rr.(*mdns.SOA); ok {
			return min(soa.Hdr.Ttl, soa.Minttl)
		}
	}
	return 0
}
