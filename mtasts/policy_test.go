package mtasts

import (
	"strings"
	"testing"
)

func TestParsePolicy(t *testing.T) {
	p, err := ParsePolicy([]byte("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.Example.net.\r\nmax_age: 604800\r\nfuture_ext: x\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != "enforce" || p.MaxAge != 604800 || len(p.MX) != 2 || p.MX[1] != "*.example.net" {
		t.Fatalf("parsed %+v", p)
	}
	if p, err := ParsePolicy([]byte("version: STSv1\nmode: none\nmax_age: 1\n")); err != nil || p.Mode != "none" {
		t.Fatalf("mode none without mx: %+v %v", p, err)
	}
	for _, tc := range []struct{ in, want string }{
		{"mode: enforce\nmx: a.example\nmax_age: 1\n", "no version"},
		{"version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n", "need STSv1"},
		{"version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n", "not enforce, testing or none"},
		{"version: STSv1\nmode: enforce\nmax_age: 1\n", "no mx"},
		{"version: STSv1\nmode: enforce\nmx: a.example\n", "no max_age"},
		{"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n", "not a number"},
		{"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 99999999\n", "exceeds"},
		{"version: STSv1\nmode: enforce\nmode: none\nmx: a.example\nmax_age: 1\n", "twice"},
		{"version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 1\n", "bad"},
		{"version: STSv1\nmode: enforce\nmx: localhost\nmax_age: 1\n", "not a host name"},
		{"version: STSv1\nmode enforce\n", "not \"key: value\""},
		{"<html>", "not \"key: value\""},
		{strings.Repeat("x", MaxPolicySize+1), "exceeds"},
	} {
		_, err := ParsePolicy([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.in[:min(len(tc.in), 40)], err, tc.want)
		}
	}
}

func TestParseTXT(t *testing.T) {
	if id, err := ParseTXT([]string{"v=spf1 -all", "v=STSv1; id=20160831085700Z;"}); err != nil || id != "20160831085700Z" {
		t.Fatalf("id %q, %v", id, err)
	}
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{nil, "no v=STSv1"},
		{[]string{"v=STSv1; id=1", "v=STSv1; id=2"}, "exactly one"},
		{[]string{"v=STSv1;"}, "no id"},
		{[]string{"v=STSv1; id=a-b"}, "letters and digits"},
		{[]string{"v=STSv1; id=" + strings.Repeat("a", 33)}, "letters and digits"},
		{[]string{"v=STSv1x; id=1"}, "must start with v=STSv1"},
		{[]string{"v=STSv1; id"}, "not key=value"},
	} {
		if _, err := ParseTXT(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.in, err, tc.want)
		}
	}
}

func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte("version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 86400\n"))
	f.Add([]byte("version: STSv1\r\nmode: none\r\nmax_age: 0\r\n"))
	f.Add([]byte("version:STSv1\nmode:testing\nmx:*.a.b\nmax_age:31557600"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePolicy(data)
		if err != nil {
			return
		}
		if p.Mode != "enforce" && p.Mode != "testing" && p.Mode != "none" {
			t.Fatalf("accepted mode %q", p.Mode)
		}
		if p.MaxAge < 0 || p.MaxAge > MaxMaxAge {
			t.Fatalf("accepted max_age %d", p.MaxAge)
		}
		if p.Mode != "none" && len(p.MX) == 0 {
			t.Fatal("accepted an enforce/testing policy without mx")
		}
		for _, m := range p.MX {
			if checkPattern(m) != nil || strings.ToLower(m) != m {
				t.Fatalf("accepted pattern %q", m)
			}
		}
	})
}
