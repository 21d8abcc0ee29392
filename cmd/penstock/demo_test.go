package main

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The demo's report adds up: every injected recipient is delivered,
// bounced, expired or still queued, and the DSNs to the sender are told
// apart (they used to bounce for an unknown sender domain, and the
// sender ended up quarantined: 1,983 + 18 of 2,000).
func TestDemoReportAddsUp(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo world (~10 s)")
	}
	var out, errb bytes.Buffer
	if rc := run([]string{"demo", "-n", "200", "-outage", "1s"}, &out, &errb); rc != 0 {
		t.Fatalf("rc %d: %s", rc, errb.String())
	}
	m := regexp.MustCompile(`(\d+) recipients injected = (\d+) delivered \+ (\d+) bounced \+ (\d+) expired \+ (\d+) still queued`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no totals line:\n%s", out.String())
	}
	n := make([]int, 6)
	for i := 1; i <= 5; i++ {
		n[i], _ = strconv.Atoi(m[i])
	}
	if n[1] != 200 || n[2]+n[3]+n[4]+n[5] != n[1] {
		t.Fatalf("totals do not add up: %s", m[0])
	}
	if n[3] == 0 {
		t.Fatalf("the demo's unknown users did not bounce: %s", m[0])
	}
	if !strings.Contains(out.String(), fmt.Sprintf("plus %d DSNs", n[3])) {
		t.Errorf("each bounce should give one DSN delivered to the sender:\n%s", out.String())
	}
	for _, want := range []string{"recipient domains: gmail.test", "penstock explain yahoo.test -api http://127.0.0.1:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
}
