package quarantine

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzNormalize: the quarantine key of an address is stable (normalising
// it again changes nothing) and holds nothing that could not be in an
// address.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"User@Example.COM", " <a@b.example> ", "a@b.example.", "a@@b", "@b", "a@", "a@[1.2.3.4]", "a@[",
		"Ünïcode@BÜCHER.example", "a b@c.example", "a@b..c", "a@_dmarc.example", "x@İSTANBUL.example", strings.Repeat("a", 250) + "@b.c", "\xff@x"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, addr string, caseSensitive bool) {
		k, err := normalizeInto(nil, addr, !caseSensitive)
		if err != nil {
			return
		}
		key := string(k)
		if !utf8.ValidString(key) || strings.ContainsAny(key, " \t\r\n\x00<>") || strings.Count(key, "@") != 1 {
			t.Fatalf("normalizeInto(%q) = %q", addr, key)
		}
		if Normalize(addr, caseSensitive) != key {
			t.Fatalf("Normalize(%q) = %q, normalizeInto %q", addr, Normalize(addr, caseSensitive), key)
		}
		again, err := normalizeInto(nil, key, !caseSensitive)
		if err != nil || string(again) != key {
			t.Fatalf("normalizeInto(%q) = %q, which gives %q, %v", addr, key, again, err)
		}
	})
}
