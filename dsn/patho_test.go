package dsn

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestParsePathological: inputs built to make a careless parser quadratic
// (many script elements, huge field groups, many addresses, long lines
// without '@', deep boundaries) do not hang: before the fixes the script
// elements and the field group took a minute between them.
func TestParsePathological(t *testing.T) {
	big := func(n int, unit string) string { return strings.Repeat(unit, n) }
	cases := map[string][]byte{
		"script elements": lf("From: MAILER-DAEMON@a.example", "Subject: failure notice", "Content-Type: text/html", "",
			big(20000, "<script>x</script>")),
		"field group": append([]byte("From: MAILER-DAEMON@a.example\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\n\n--b\nContent-Type: message/delivery-status\n\nFinal-Recipient: rfc822; a@b.example\n"),
			[]byte(func() string {
				var sb strings.Builder
				for i := 0; i < 60000; i++ {
					fmt.Fprintf(&sb, "X-F%d: v\n", i) // all distinct
				}
				return sb.String()
			}())...),
		"addresses":  lf("From: MAILER-DAEMON@a.example", "Subject: failure notice", "", big(20000, "u@a.example 550 5.1.1 x\n")),
		"long line":  lf("From: MAILER-DAEMON@a.example", "Subject: failure notice", "", big(200000, "a:")),
		"boundaries": lf("From: a@b.example", "Content-Type: multipart/mixed; boundary=\"\"", "", big(50000, "--x\n")),
		"lone CRs":   bytes.Repeat([]byte("a\r"), 400000),
	}
	for name, msg := range cases {
		start := time.Now()
		Parse(msg)
		if d := time.Since(start); d > 30*time.Second { // a hang guard, not a performance claim
			t.Errorf("%s: %v", name, d)
		}
	}
}
