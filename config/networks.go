package config

import (
	"net/netip"
	"slices"
)

// Networks are written in many spellings that mean the same thing: an IPv4
// network can also be written IPv4-mapped (::ffff:10.0.0.0/104, RFC 4291
// §2.5.5.2), and host bits may be set (10.1.2.3/8). Every list of networks
// in the configuration goes through ParsePrefix, so that validation and the
// listeners that match client addresses see one spelling, and a check such
// as "no open relay" cannot be dodged by writing 0.0.0.0/0 another way.

// ParsePrefix parses a network in CIDR form and returns it normalised (see
// NormalizePrefix).
func ParsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return NormalizePrefix(p), nil
}

// NormalizePrefix returns p with its host bits cleared and, when it lies
// within the IPv4-mapped range, as the IPv4 network it stands for
// (::ffff:0.0.0.0/96 is 0.0.0.0/0). Client addresses are unmapped the same
// way before they are matched (an IPv4 client on a dual-stack socket shows
// as ::ffff:a.b.c.d), so a normalised prefix matches exactly the clients
// its spelling names.
func NormalizePrefix(p netip.Prefix) netip.Prefix {
	if !p.IsValid() {
		return p
	}
	p = p.Masked()
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}

// CoversAll reports whether the networks, normalised, together hold every
// IPv4 address or every IPv6 address, whatever their spelling: 0.0.0.0/0,
// ::/0, ::ffff:0:0/96, or 0.0.0.0/1 with 128.0.0.0/1. An IPv6 network that
// holds the whole IPv4-mapped range counts as holding all of IPv4.
func CoversAll(nets []netip.Prefix) bool {
	mapped := netip.PrefixFrom(netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff}), 96) // ::ffff:0:0/96
	var v4, v6 []netip.Prefix
	for _, p := range nets {
		p = NormalizePrefix(p)
		switch {
		case !p.IsValid():
		case p.Addr().Is4():
			v4 = append(v4, p)
		default:
			v6 = append(v6, p)
			if p.Bits() <= mapped.Bits() && p.Contains(mapped.Addr()) {
				v4 = append(v4, netip.PrefixFrom(netip.IPv4Unspecified(), 0))
			}
		}
	}
	return covers(v4, netip.IPv4Unspecified()) || covers(v6, netip.IPv6Unspecified())
}

// covers reports whether the union of nets (all of first's family) runs
// from first to the family's last address without a gap.
func covers(nets []netip.Prefix, first netip.Addr) bool {
	slices.SortFunc(nets, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	next := first
	for _, p := range nets {
		if next.Less(p.Addr()) {
			return false // a gap before p
		}
		last := lastAddr(p)
		if next.Compare(last) <= 0 {
			next = last.Next()
			if !next.IsValid() {
				return true // past the family's last address
			}
		}
	}
	return false
}

// lastAddr is the highest address of a masked prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As16()
	host := 128 - p.Addr().BitLen() + p.Bits() // first host bit in the 16-byte form
	for i := host; i < 128; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a := netip.AddrFrom16(b)
	if p.Addr().Is4() {
		return a.Unmap()
	}
	return a
}
