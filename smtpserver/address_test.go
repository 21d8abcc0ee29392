package smtpserver

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestCheckMailbox(t *testing.T) {
	good := func(in string, utf8 bool, want string) {
		t.Helper()
		got, err := checkMailbox(in, utf8)
		if err != nil || got != want {
			t.Errorf("checkMailbox(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := func(in string, utf8 bool, wantErr string) {
		t.Helper()
		_, err := checkMailbox(in, utf8)
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("checkMailbox(%q) error %v, want one containing %q", in, err, wantErr)
		}
	}
	good("user@example.com", false, "user@example.com")
	good("First.Last+tag@Mail.Example.COM", false, "First.Last+tag@mail.example.com")
	good("o'neil!#$%&*=?^_`{|}~-@x", false, "o'neil!#$%&*=?^_`{|}~-@x") // one label is enough
	good("u@xn--bcher-kva.example", false, "u@xn--bcher-kva.example")
	good("u@[192.0.2.1]", false, "u@[192.0.2.1]")
	good("u@[ipv6:2001:DB8::1]", false, "u@[IPv6:2001:db8::1]")
	good("δοκιμή@παράδειγμα.δοκιμή", true, "δοκιμή@παράδειγμα.δοκιμή")
	good("u@Bücher.example", true, "u@bücher.example")
	good(strings.Repeat("l", 64)+"@"+strings.Repeat("d", 63)+".example", false, strings.Repeat("l", 64)+"@"+strings.Repeat("d", 63)+".example")

	bad("user", false, "no @domain")
	bad("@example.com", false, "local part is empty")
	bad("user@", false, "domain is empty")
	bad(".u@x.example", false, "starts or ends with a dot")
	bad("a..b@x.example", false, "two dots")
	bad("a b@x.example", false, "not allowed unquoted")
	bad("a\r\nb@x.example", false, "not allowed unquoted")
	bad("a@b@x.example", false, "not allowed unquoted")
	bad("u@x..example", false, "empty label")
	bad("u@x.example.", false, "ends with a dot")
	bad("u@-x.example", false, "hyphen")
	bad("u@x_y.example", false, "not allowed in a label")
	bad("u@x y.example", false, "not allowed in a label")
	bad("u@"+strings.Repeat("d", 64)+".example", false, "longer than 63")
	bad(strings.Repeat("l", 65)+"@x.example", false, "longer than 64")
	bad("u@"+strings.Repeat("abcdefghi.", 25)+"example", false, "longer than 254")
	bad("u@[300.1.1.1]", false, "not an IPv4 address")
	bad("u@[IPv6:1.2.3.4]", false, "not an IPv6 address")
	bad("u@[1.2.3.4", false, "not closed")
	bad("\xff@x.example", false, "not valid UTF-8")
	bad("u@x.exa\u200bmple", true, "not allowed in a label")
	if _, err := checkMailbox("δοκιμή@example.com", false); !errors.Is(err, errNeedsUTF8) {
		t.Errorf("non-ASCII without SMTPUTF8: %v", err)
	}
	if _, err := checkMailbox("u@bücher.example", false); !errors.Is(err, errNeedsUTF8) {
		t.Errorf("U-label without SMTPUTF8: %v", err)
	}
}

func TestAppendCRLF(t *testing.T) {
	for in, want := range map[string]string{
		"":                "",
		"a\r\nb\r\n":      "a\r\nb\r\n",
		"a\nb\n":          "a\r\nb\r\n",
		"a\rb\r":          "a\r\nb\r\n",
		"a\r\r\nb":        "a\r\n\r\nb\r\n",
		"\n\n":            "\r\n\r\n",
		"no final ending": "no final ending\r\n",
		"x\n.\r\n":        "x\r\n.\r\n",
	} {
		if got := string(crlfLines([]byte(in))); got != want {
			t.Errorf("appendCRLF(%q) = %q, want %q", in, got, want)
		}
	}
}

// crlfLines is what data stores of a body: scanLines' verdict, then
// appendCRLF.
func crlfLines(src []byte) []byte {
	crlf, _ := scanLines(src)
	return appendCRLF(nil, src, crlf)
}

func TestReceivedHeader(t *testing.T) {
	now := time.Date(2025, 7, 1, 10, 0, 0, 0, time.UTC)
	got := string(appendReceived(nil, traceInfo{
		helo: "bad(helo);\r\nX-Injected: 1", remote: netip.MustParseAddr("2001:db8::1"), hostname: "mx.example",
		tls: true, auth: true, id: "abc-1-2", rcpts: []string{"r@example.com"}, now: now,
	}))
	want := "Received: from bad_helo____X-Injected:_1 ([IPv6:2001:db8::1])\r\n" +
		"\tby mx.example (Penstock) with ESMTPSA id abc-1-2\r\n" +
		"\tfor <r@example.com>;\r\n" +
		"\tTue, 01 Jul 2025 10:00:00 +0000\r\n"
	if got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
}
