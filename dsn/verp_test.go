package dsn

import (
	"errors"
	"strings"
	"testing"
)

func testVERP() VERP {
	return VERP{Domain: "bounce.penstock.example", Key: []byte("0123456789abcdef0123456789abcdef")}
}

func TestVERPRoundTrip(t *testing.T) {
	v := testVERP()
	for _, tc := range []struct {
		id   string
		rcpt int
	}{{"0123456789abcdef", 0}, {"FFFFFFFFFFFFFFFF", 1}, {"0000000000000001", 999999999}, {"67c5a1b200000042", 37}} {
		addr := v.Encode(tc.id, tc.rcpt)
		local, _, _ := strings.Cut(addr, "@")
		if !strings.HasPrefix(addr, "b+") || len(local) > 64 {
			t.Errorf("Encode(%q, %d) = %q", tc.id, tc.rcpt, addr)
		}
		for _, form := range []string{addr, strings.ToUpper(addr), "<" + addr + ">", " " + addr + " ", addr + "."} {
			id, n, err := v.Decode(form)
			if err != nil || id != strings.ToLower(tc.id) || n != tc.rcpt {
				t.Errorf("Decode(%q) = %q, %d, %v; want %q, %d", form, id, n, err, strings.ToLower(tc.id), tc.rcpt)
			}
		}
	}
	p := v
	p.Prefix = "bounces"
	addr := p.Encode("0123456789abcdef", 3)
	if !strings.HasPrefix(addr, "bounces+0123456789abcdef.3.") {
		t.Errorf("prefix: %q", addr)
	}
	if _, _, err := p.Decode(addr); err != nil {
		t.Errorf("custom prefix: %v", err)
	}
	if _, _, err := v.Decode(addr); err == nil {
		t.Errorf("default prefix accepted %q", addr)
	}
}

func TestVERPRefused(t *testing.T) {
	v := testVERP()
	good := v.Encode("0123456789abcdef", 2)
	local, _, _ := strings.Cut(good, "@")
	check := local[len(local)-checkLen:]
	flip := func(c byte) string {
		if c == 'a' {
			return "b"
		}
		return "a"
	}
	other := VERP{Domain: v.Domain, Key: []byte("another key")}

	for _, tc := range []struct {
		name, addr string
		badCheck   bool
	}{
		{"wrong domain", local + "@other.example", false},
		{"subdomain", local + "@x.bounce.penstock.example", false},
		{"no domain", local, false},
		{"forged check", local[:len(local)-1] + flip(local[len(local)-1]) + "@bounce.penstock.example", true},
		{"other key", other.Encode("0123456789abcdef", 2), true},
		{"other recipient", strings.Replace(good, ".2.", ".3.", 1), true},
		{"other message", strings.Replace(good, "0123456789abcdef", "0123456789abcdee", 1), true},
		{"short id", "b+0123456789abcde.2." + check + "@bounce.penstock.example", false},
		{"non-hex id", "b+0123456789abcdeg.2." + check + "@bounce.penstock.example", false},
		{"leading zero", "b+0123456789abcdef.02." + check + "@bounce.penstock.example", false},
		{"negative", "b+0123456789abcdef.-2." + check + "@bounce.penstock.example", false},
		{"huge index", "b+0123456789abcdef.12345678901." + check + "@bounce.penstock.example", false},
		{"short check", "b+0123456789abcdef.2." + check[:6] + "@bounce.penstock.example", false},
		{"extra field", "b+0123456789abcdef.2.x." + check + "@bounce.penstock.example", false},
		{"wrong prefix", "c+0123456789abcdef.2." + check + "@bounce.penstock.example", false},
		{"plain address", "postmaster@bounce.penstock.example", false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := v.Decode(tc.addr)
			if err == nil {
				t.Fatalf("Decode(%q) accepted", tc.addr)
			}
			if errors.Is(err, ErrBadCheck) != tc.badCheck {
				t.Errorf("Decode(%q): %v; ErrBadCheck %v, want %v", tc.addr, err, errors.Is(err, ErrBadCheck), tc.badCheck)
			}
		})
	}
	if _, _, err := (VERP{Domain: v.Domain}).Decode(VERP{Domain: v.Domain}.Encode("0123456789abcdef", 0)); err == nil {
		t.Error("empty key accepted")
	}
}
