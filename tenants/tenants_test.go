package tenants

import (
	"errors"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, ok := range []string{"", "acme", "acme-eu.2", "ops@acme", strings.Repeat("a", 64)} {
		if err := Check(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"a b", "a\r\nb", "ü", strings.Repeat("a", 65), "a|b"} {
		if err := Check(bad); !errors.Is(err, ErrBadName) {
			t.Errorf("%q: %v, want ErrBadName", bad, err)
		}
	}
}

func TestWeight(t *testing.T) {
	s := Set{"big": {Weight: 3}, "zero": {}}
	if s.Weight("big") != 3 || s.Weight("zero") != 1 || s.Weight("unknown") != 1 || Set(nil).Weight("x") != 1 {
		t.Error("weights: a tenant weighs its weight, at least 1")
	}
}
