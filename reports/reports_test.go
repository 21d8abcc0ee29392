package reports

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/bounce"
	"github.com/penstock-mta/penstock/dsn"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/quarantine"
	"github.com/penstock-mta/penstock/smtpserver"
)

type fakeQuarantine struct {
	mu    sync.Mutex
	addrs []string
}

func (f *fakeQuarantine) Failure(addr string, _ quarantine.Failure) (quarantine.Entry, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addrs = append(f.addrs, "failure:"+addr)
	return quarantine.Entry{}, true, nil
}

func (f *fakeQuarantine) Complaint(addr string, _ quarantine.Failure) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addrs = append(f.addrs, "complaint:"+addr)
	return nil
}

type discardLog struct{}

func (discardLog) Write(*events.Record) {}

type hardClassifier struct{}

func (hardClassifier) Classify(int, string, string) bounce.Verdict {
	return bounce.Verdict{Reason: bounce.UserUnknown, Class: bounce.Hard}
}

var testVERP = &VERP{Domain: "bounces.test", Key: []byte("0123456789abcdef0123456789abcdef")}

// A return path verifies for the address it was made for (in any case),
// for no other; an unbound one of the earlier form and postmaster@ are told
// apart.
func TestVERPBoundToAddress(t *testing.T) {
	rp := testVERP.Encode("00000000000000ab", 3, "Alice@Example.test")
	state, id, rcpt, ci := testVERP.match([]string{rp}, []string{"bob@example.test", "<alice@example.TEST>"})
	if state != validVERP || id != "00000000000000ab" || rcpt != 3 || ci != 1 {
		t.Fatalf("match: %v %q %d %d", state, id, rcpt, ci)
	}
	if state, _, _, _ := testVERP.match([]string{rp}, []string{"bob@example.test"}); state != badVERP {
		t.Fatalf("another address: %v, want badVERP", state)
	}
	old := dsn.VERP{Domain: testVERP.Domain, Key: testVERP.Key}.Encode("00000000000000ab", 3)
	if state, _, _, _ := testVERP.match([]string{old}, []string{"alice@example.test"}); state != oldVERP {
		t.Fatalf("unbound return path: %v, want oldVERP", state)
	}
	if state, _, _, _ := testVERP.match([]string{"postmaster@bounces.test"}, []string{"alice@example.test"}); state != noVERP {
		t.Fatalf("postmaster: %v, want noVERP", state)
	}
}

func TestNetworkAndLimiter(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.77": "192.0.2.0/24", "::ffff:192.0.2.77": "192.0.2.0/24", "2001:db8:1:2:3::9": "2001:db8:1:2::/64",
	} {
		if got := network(netip.MustParseAddr(in)).String(); got != want {
			t.Errorf("network(%s) = %s, want %s", in, got, want)
		}
	}
	l := newLimiter(2)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.200")
	t0 := time.Unix(1_000_000, 0)
	if !l.allow(a, t0) || !l.allow(b, t0) || l.allow(a, t0) {
		t.Fatal("the /24 did not share 2 tokens")
	}
	if !l.allow(netip.MustParseAddr("192.0.3.1"), t0) {
		t.Fatal("another /24 was limited")
	}
	if !l.allow(a, t0.Add(30*time.Second)) || l.allow(a, t0.Add(30*time.Second)) {
		t.Fatal("half a minute did not refill exactly one token")
	}
}

func newTestIntake(t *testing.T, free *uint64, maxFiles int, maxBytes int64) (*Intake, *fakeQuarantine, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "unparsed-reports")
	q := &fakeQuarantine{}
	in := New(Config{VERP: testVERP, MaxReportSize: 1 << 20, PerMinute: 1000, Dir: dir, MaxBytes: maxBytes, MaxFiles: maxFiles, MinFree: 1000},
		Deps{Quarantine: q, Log: discardLog{}, Classifier: hardClassifier{},
			FreeSpace: func(string) (uint64, error) { return *free, nil }})
	return in, q, dir
}

func accept(t *testing.T, in *Intake, to, body string) {
	t.Helper()
	env := &smtpserver.Envelope{To: []string{to}, Remote: netip.MustParseAddrPort("127.0.0.1:4000")}
	if _, err := in.Accept(context.Background(), env, []byte(body)); err != nil {
		t.Fatal(err)
	}
}

// Below the free-space margin nothing is kept (counted); above, it is.
func TestKeepSkipsWhenDiskLow(t *testing.T) {
	free := uint64(500)
	in, _, dir := newTestIntake(t, &free, 10, 1<<20)
	accept(t, in, "postmaster@bounces.test", "Subject: junk\r\n\r\njunk\r\n")
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("%d files kept with the disk below the margin", len(ents))
	}
	if st := in.Stats(); st.NotKept["low_disk"] != 1 || st.Kept != 0 {
		t.Fatalf("stats %+v", st)
	}
	free = 1 << 30
	accept(t, in, "postmaster@bounces.test", "Subject: junk\r\n\r\njunk\r\n")
	if st := in.Stats(); st.Kept != 1 || st.KeptFiles != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// Reports kept by an earlier run count toward the bounds, and go first.
func TestKeepCountsEarlierFiles(t *testing.T) {
	free := uint64(1 << 40)
	in, _, dir := newTestIntake(t, &free, 3, 1<<20)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		p := filepath.Join(dir, fmt.Sprintf("old%d.eml", i))
		if err := os.WriteFile(p, []byte("old"), 0o640); err != nil {
			t.Fatal(err)
		}
		mt := time.Unix(int64(1_000_000+i), 0)
		os.Chtimes(p, mt, mt)
	}
	accept(t, in, "postmaster@bounces.test", "Subject: junk\r\n\r\njunk\r\n")
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) != 3 || strings.Contains(strings.Join(names, " "), "old0") {
		t.Fatalf("kept %v: want old1, old2 and the new one", names)
	}
	if st := in.Stats(); st.KeptDropped != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// A DSN from a trusted network without VERP acts on what it names, once per
// status, at most MaxActions addresses.
func TestTrustedNetworkActsOnNamed(t *testing.T) {
	free := uint64(1 << 40)
	in, q, _ := newTestIntake(t, &free, 10, 1<<20)
	in.cfg.TrustedNets = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	var b strings.Builder
	b.WriteString("From: MAILER-DAEMON@x.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n" +
		"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x.test\r\n")
	for i := 0; i < MaxActions+5; i++ {
		fmt.Fprintf(&b, "\r\nFinal-Recipient: rfc822; r%d@x.test\r\nOriginal-Recipient: rfc822; o%d@x.test\r\nAction: failed\r\nStatus: 5.1.1\r\n", i, i)
	}
	b.WriteString("--B--\r\n")
	accept(t, in, "postmaster@bounces.test", b.String())
	if len(q.addrs) != MaxActions || q.addrs[0] != "failure:r0@x.test" {
		t.Fatalf("%d actions, first %v", len(q.addrs), q.addrs[:min(1, len(q.addrs))])
	}
	if st := in.Stats(); st.Acted["trusted_network"] != 1 || st.ExtraRecipients != 5 {
		t.Fatalf("stats %+v", st)
	}
}
