package bounce

import (
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestShippedRulesAreValid(t *testing.T) {
	rules := Shipped()
	if len(rules) < 30 {
		t.Fatalf("only %d shipped rules", len(rules))
	}
	names := map[string]bool{}
	for _, r := range rules {
		if names[r.Name] {
			t.Errorf("duplicate shipped rule name %q", r.Name)
		}
		names[r.Name] = true
		if _, err := compile(r); err != nil {
			t.Error(err)
		}
		if r.Class == Hard && r.Retry != 0 {
			t.Errorf("rule %q: retry on a hard class means nothing", r.Name)
		}
	}
	if _, err := New(nil, true); err != nil {
		t.Fatal(err)
	}
}

func TestParseRulesStrict(t *testing.T) {
	_, err := parseRules([]byte("[[rule]]\nname = \"x\"\nreasn = \"unknown\"\n"))
	if err == nil || !strings.Contains(err.Error(), "reasn") {
		t.Fatalf("unknown key not reported: %v", err)
	}
	_, err = parseRules([]byte("[[rule]]\nname = \"x\"\nretry = \"soon\"\n"))
	if err == nil || !strings.Contains(err.Error(), `"x"`) {
		t.Fatalf("bad duration not reported: %v", err)
	}
	rules, err := parseRules([]byte("[[rule]]\nname = \"x\"\ncode = \"4*\"\nreason = \"refused\"\nclass = \"soft\"\nretry = \"90s\"\n"))
	if err != nil || len(rules) != 1 || rules[0].Retry != 90*time.Second || rules[0].Code != "4*" {
		t.Fatalf("got %+v, %v", rules, err)
	}
}

func TestUserRulesOverrideShipped(t *testing.T) {
	// Shipped: Gmail's 5.1.1 is user_unknown/hard. An operator who distrusts
	// it for one provider can make it soft.
	user := []Rule{{Name: "soft-gmail-unknown", Enhanced: "5.1.1", Match: `gsmtp$`, Reason: UserUnknown, Class: Soft}}
	c, err := New(user, true)
	if err != nil {
		t.Fatal(err)
	}
	v := c.Classify(550, "5.1.1", "The email account that you tried to reach does not exist. abc - gsmtp")
	if v.Rule != "soft-gmail-unknown" || v.Class != Soft {
		t.Fatalf("user rule did not win: %+v", v)
	}
	// Other replies still reach the shipped set.
	if v := c.Classify(421, "4.7.0", "[TSS04] Messages from 192.0.2.1 temporarily deferred"); v.Rule != "yahoo-deferred" || v.Retry != 0 {
		t.Fatalf("shipped rule lost: %+v", v)
	}
	// A user rule may reuse a shipped rule's name to replace it.
	if _, err := New([]Rule{{Name: "greylisting", Code: "4*", Match: "greylist", Reason: Unknown, Class: Soft}}, true); err != nil {
		t.Fatal(err)
	}
	// Without the shipped set, only user rules and the defaults apply.
	c, _ = New(user, false)
	if v := c.Classify(421, "4.7.0", "[TSS04] deferred"); v.Rule != RuleRFC3463 || v.Reason != Refused {
		t.Fatalf("got %+v", v)
	}
}

func TestWildcards(t *testing.T) {
	rules := []Rule{
		{Name: "exact", Code: "551", Reason: UserUnknown, Class: Hard},
		{Name: "q", Code: "45?", Enhanced: "4.2.?", Reason: MailboxFull, Class: Soft},
		{Name: "star-code", Code: "5*", Enhanced: "5.7.*", Match: "blocked", Reason: Refused, Class: Soft, Retry: time.Minute},
		{Name: "star-enh", Enhanced: "*.4.*", Reason: Unreachable, Class: Soft},
		{Name: "text-only", Match: `^greylisted\b`, Reason: ErrorIgnored, Class: Ignored},
	}
	c, err := New(rules, false)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		code      int
		enh, text string
		rule      string
	}{
		{551, "", "x", "exact"},
		{550, "", "user unknown", RuleDefault},
		{452, "4.2.2", "full", "q"},
		{452, "4.2.10", "full", RuleRFC3463}, // '?' is one character
		{421, "4.2.2", "full", RuleRFC3463},  // code 421 is not 45?
		{554, "5.7.1", "You are BLOCKED here", "star-code"},
		{554, "5.7.13", "blocked", "star-code"},
		{554, "5.1.1", "blocked", RuleRFC3463},
		{554, "", "blocked", RuleDefault}, // an enhanced pattern needs an enhanced code
		{451, "4.4.1", "no answer", "star-enh"},
		{550, "5.4.4", "unable to route", "star-enh"},
		{450, "", "Greylisted for 5 minutes", "text-only"},
		{450, "", "you are greylisted", RuleDefault},
		{550, "", "5.7.1 blocked", "star-code"}, // enhanced code taken from the text
	}
	for _, tc := range cases {
		if v := c.Classify(tc.code, tc.enh, tc.text); v.Rule != tc.rule {
			t.Errorf("Classify(%d, %q, %q) matched %q, want %q", tc.code, tc.enh, tc.text, v.Rule, tc.rule)
		}
	}
	if v := c.Classify(554, "5.7.1", "blocked"); v.Retry != time.Minute {
		t.Errorf("retry not carried: %+v", v)
	}
}

func TestGlob(t *testing.T) {
	good := func(p, s string) {
		t.Helper()
		if !glob(p, s) {
			t.Errorf("glob(%q, %q) = false", p, s)
		}
	}
	bad := func(p, s string) {
		t.Helper()
		if glob(p, s) {
			t.Errorf("glob(%q, %q) = true", p, s)
		}
	}
	good("550", "550")
	good("5*", "550")
	good("5*", "5")
	good("*", "")
	good("5.*.1", "5.7.1")
	good("5.*1", "5.7.11") // '*' matches any run, dots included
	bad("5.*.1", "5.7.11")
	good("?.?.?", "4.2.2")
	good("*.7.*", "5.7.26")
	bad("550", "551")
	bad("5*", "450")
	bad("55?", "55")
	bad("5.7.*", "5.1.7")
	bad("?.?.?", "4.2.22")
}

func TestNewRejectsBadRules(t *testing.T) {
	ok := Rule{Name: "ok", Code: "550", Reason: UserUnknown, Class: Hard}
	cases := []struct {
		mod  func(*Rule)
		want string
	}{
		{func(r *Rule) { r.Name = "" }, "missing name"},
		{func(r *Rule) { r.Reason = "nope" }, "unknown reason"},
		{func(r *Rule) { r.Class = "firm" }, "unknown class"},
		{func(r *Rule) { r.Code = "5x0" }, "code"},
		{func(r *Rule) { r.Code = "55" }, "three characters"},
		{func(r *Rule) { r.Code = "250" }, "4 or 5"},
		{func(r *Rule) { r.Enhanced = "5.1" }, "class.subject.detail"},
		{func(r *Rule) { r.Enhanced = "5-1-1" }, "enhanced"},
		{func(r *Rule) { r.Match = "(" }, "match"},
		{func(r *Rule) { r.Code, r.Match = "", "" }, "matches every reply"},
		{func(r *Rule) { r.Retry = -time.Second }, "negative retry"},
	}
	for _, tc := range cases {
		r := ok
		tc.mod(&r)
		_, err := New([]Rule{r}, false)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("rule %+v: error %v, want it to mention %q", r, err, tc.want)
		}
	}
	if _, err := New([]Rule{ok, ok}, false); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Errorf("duplicate names: %v", err)
	}
}

func TestLiteralFastPath(t *testing.T) {
	c, err := New([]Rule{
		{Name: "lit", Match: "User Unknown|no such user", Reason: UserUnknown, Class: Hard},
		{Name: "re", Match: `mailbox\s+full`, Reason: MailboxFull, Class: Soft},
		{Name: "mixed", Match: `over ?quota|\bquota exceeded\b|(?:Speicher|Disk) voll`, Reason: MailboxFull, Class: Soft},
		{Name: "flags", Match: `(?-i)ABC|def`, Reason: Unknown, Class: Soft},
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	kinds := func(r compiled) (s []string) {
		for _, b := range r.branches {
			switch {
			case b.re == nil:
				s = append(s, "words")
			case b.filtered:
				s = append(s, "filtered")
			default:
				s = append(s, "regexp")
			}
		}
		return s
	}
	want := [][]string{{"words", "words"}, {"filtered"}, {"words", "filtered", "words"}, {"filtered"}}
	for i, r := range c.rules {
		if got := kinds(r); !reflect.DeepEqual(got, want[i]) {
			t.Errorf("rule %s: branches %v, want %v", r.Name, got, want[i])
		}
	}
	cases := []struct{ text, rule string }{
		{"550 USER UNKNOWN here", "lit"},
		{"Mailbox   FULL", "re"},
		{"mailbox is full", ""},
		{"user is OVERQUOTA", "mixed"},
		{"QUOTA EXCEEDED.", "mixed"},
		{"the quota exceededness", ""},
		{"disk VOLL", "mixed"},
		{"ABC", "flags"},
		{"abc", ""},
		{"DEF", ""}, // (?-i) reaches across '|' to the end of the pattern
		{strings.Repeat("x", 2000) + " No Such User", "lit"},
	}
	for _, tc := range cases {
		v := c.Classify(450, "", tc.text)
		if tc.rule == "" && v.Rule != RuleDefault || tc.rule != "" && v.Rule != tc.rule {
			t.Errorf("%q matched %q, want %q", tc.text, v.Rule, tc.rule)
		}
	}
}

func TestDefaults(t *testing.T) {
	c, _ := New(nil, false)
	cases := []struct {
		code   int
		enh    string
		text   string
		reason Reason
		class  Class
		rule   string
	}{
		{550, "5.1.1", "", UserUnknown, Hard, RuleRFC3463},
		{550, "5.1.0", "", Unknown, Soft, RuleRFC3463},
		{553, "5.1.3", "", UserUnknown, Hard, RuleRFC3463},
		{551, "5.1.6", "", UserUnknown, Hard, RuleRFC3463},
		{550, "5.1.2", "", InvalidDomain, Hard, RuleRFC3463},
		{550, "5.4.4", "", InvalidDomain, Hard, RuleRFC3463},
		{550, "5.2.1", "", AccountDisabled, Hard, RuleRFC3463},
		{552, "5.2.2", "", MailboxFull, Soft, RuleRFC3463},
		{452, "4.2.2", "", MailboxFull, Soft, RuleRFC3463},
		{550, "5.7.1", "", Refused, Soft, RuleRFC3463},
		{421, "4.7.0", "", Refused, Soft, RuleRFC3463},
		{451, "4.4.1", "", Unreachable, Soft, RuleRFC3463},
		{550, "5.0.0", "", Unknown, Soft, RuleRFC3463},
		{550, "5.4.6", "", Unreachable, Soft, RuleRFC3463},
		{501, "5.5.2", "", Unknown, Soft, RuleRFC3463},
		{552, "5.3.4", "", Refused, Soft, RuleRFC3463},
		{550, "5.6.0", "", Refused, Soft, RuleRFC3463},
		{553, "5.1.7", "", SenderRejected, Soft, RuleRFC3463},
		// The reply code decides permanence when the classes disagree.
		{450, "5.1.1", "", Unknown, Soft, RuleRFC3463},
		{550, "4.2.2", "", MailboxFull, Soft, RuleRFC3463},
		{550, "4.7.1", "", Refused, Soft, RuleRFC3463},
		// Basic codes.
		{550, "", "No such user here", UserUnknown, Hard, RuleDefault},
		{551, "", "User not local; please try <x@y>", UserUnknown, Hard, RuleDefault},
		{553, "", "mailbox name not allowed", UserUnknown, Hard, RuleDefault},
		{550, "", "Go away", Unknown, Soft, RuleDefault},
		{552, "", "Requested mail action aborted: exceeded storage allocation", MailboxFull, Soft, RuleDefault},
		{554, "", "Transaction failed", Refused, Soft, RuleDefault},
		{421, "", "closing", Unknown, Soft, RuleDefault},
		{450, "", "mailbox busy", Unknown, Soft, RuleDefault},
		{451, "", "local error", Unknown, Soft, RuleDefault},
		{452, "", "insufficient system storage", Unknown, Soft, RuleDefault},
		{500, "", "Syntax error", Unknown, Soft, RuleDefault},
		{503, "", "Bad sequence", Unknown, Soft, RuleDefault},
		{557, "", "whatever", Unknown, Soft, RuleDefault},
		{0, "", "", Unknown, Soft, RuleDefault},
		{250, "", "ok", ErrorIgnored, Ignored, RuleDefault},
		// An enhanced code at the start of the text is used (RFC 2034 §4)...
		{550, "", "5.1.1 <x@example.com>... User unknown", UserUnknown, Hard, RuleRFC3463},
		{550, "", "5.2.1 Mailbox disabled", AccountDisabled, Hard, RuleRFC3463},
		// ...unless its class contradicts the reply code, or it is not one.
		{450, "", "5.1.1 whatever", Unknown, Soft, RuleDefault},
		{550, "", "5.1.1000 whatever", Unknown, Soft, RuleDefault},
		{550, "", "5.1.1.2 whatever", Unknown, Soft, RuleDefault},
	}
	for _, tc := range cases {
		v := c.Classify(tc.code, tc.enh, tc.text)
		if v.Reason != tc.reason || v.Class != tc.class || v.Rule != tc.rule {
			t.Errorf("Classify(%d, %q, %q) = %s/%s by %s, want %s/%s by %s", tc.code, tc.enh, tc.text, v.Reason, v.Class, v.Rule, tc.reason, tc.class, tc.rule)
		}
	}
}

func TestClassifyLocal(t *testing.T) {
	c, _ := New(nil, true)
	opErr := func(e error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", e)}
	}
	cases := []struct {
		kind   string
		err    error
		reason Reason
		class  Class
	}{
		{LocalDNSNXDomain, errors.New("NXDOMAIN"), InvalidDomain, Hard},
		{LocalDNSNullMX, nil, InvalidDomain, Hard},
		{LocalDNSNoHost, nil, InvalidDomain, Hard},
		{LocalDNSTemp, errors.New("SERVFAIL"), Unreachable, Soft},
		{LocalConnect, opErr(syscall.ECONNREFUSED), NotConnected, Soft},
		{LocalConnect, opErr(syscall.EHOSTUNREACH), Unreachable, Soft},
		{LocalNetwork, opErr(syscall.ENETUNREACH), Unreachable, Soft},
		{LocalTimeout, errors.New("i/o timeout"), NotConnected, Soft},
		{LocalTLS, errors.New("x509: certificate signed by unknown authority"), NotConnected, Soft},
		{"something-new", nil, Unknown, Soft},
	}
	for _, tc := range cases {
		v := c.ClassifyLocal(tc.kind, tc.err)
		if v.Reason != tc.reason || v.Class != tc.class || v.Rule != RuleLocal {
			t.Errorf("ClassifyLocal(%q, %v) = %+v, want %s/%s", tc.kind, tc.err, v, tc.reason, tc.class)
		}
	}
}

func TestNormalize(t *testing.T) {
	cases := []struct{ in, want string }{
		{"  User   unknown\r\n  here ", "User unknown here"},
		{"<john.doe+x@example.com>: Recipient address rejected: User unknown in local recipient table",
			"<addr>: Recipient address rejected: User unknown in local recipient table"},
		{"mail to bob@mail.example.co.uk refused", "mail to <addr> refused"},
		{"[192.0.2.1] weren't sent", "[<ip>] weren't sent"},
		{"from 2001:db8::1 and [2001:8d8:9b5:5700::a6:8a23 12]", "from <ip> and [<ip> <n>]"},
		{"see https://support.google.com/mail/?p=NoSuchUser for more", "see <url> for more"},
		{"refer to http://mail.live.com/mail/troubleshooting.aspx#errors. [x]", "refer to <url>. [x]"},
		{"visit www.spamhaus.org/query/ip/1.2.3.4 now", "visit <url> now"},
		{"at 2023-09-19T15:05:34.324Z ok", "at <date> ok"},
		{"on 2024-01-02 at 12:46:38 +0200", "on <date> at <date>"},
		{"Arrival-Date: Tue, 30 May 2017 12:46:38 +0200 (CEST)", "Arrival-Date: <date>"},
		{"id s25si6573124wmj.54 - gsmtp", "id <id> - gsmtp"},
		{"(S2017062302). [BN1NAM02FT012.eop-nam02.prod.protection.outlook.com 08DBB71928CA8F8E]", "(<id>). [<id> <id>]"},
		{"queue id 1MNcgj-1ue23t3pyV-00S2YR", "queue id <id>"},
		{"exceeded 50 hops after 12 attempts, size 10485760", "exceeded <n> hops after <n> attempts, size <n>"},
		{"421 4.7.0 [TSS04] deferred (S3150) AS843 #5.1.1", "421 4.7.0 [TSS04] deferred (S3150) AS843 #5.1.1"},
		{"gmail-smtp-in.l.google.com said RESOLVER.ADR.RecipientNotFound", "gmail-smtp-in.l.google.com said RESOLVER.ADR.RecipientNotFound"},
		{"deferred - 4.16.55.1; see", "deferred - <ip>; see"},
		{"", ""},
	}
	for _, tc := range cases {
		if got := Normalize(tc.in); got != tc.want {
			t.Errorf("Normalize(%q)\n\tgot  %q\n\twant %q", tc.in, got, tc.want)
		}
	}
	// The point of it: two recipients' replies become one key.
	a := Normalize("550 5.1.1 <alice@example.com>: Recipient address rejected: User unknown; queue 3F2A9C01D7 at 10:01:02")
	b := Normalize("550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown; queue 9B1D44E2A8 at 23:59:59")
	if a != b {
		t.Errorf("not the same key:\n%q\n%q", a, b)
	}
}

func TestTopOrderingAndEviction(t *testing.T) {
	top := NewTop(3)
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	v := Verdict{Reason: Refused, Class: Soft}
	add := func(site, text string, n int, at time.Time) {
		for i := 0; i < n; i++ {
			top.AddAt(at, site, 421, "4.7.0", text, v)
		}
	}
	add("gmail", "rate limited", 5, t0)
	add("gmail", "try later", 2, t0.Add(time.Minute))
	add("yahoo", "TSS04", 3, t0.Add(2*time.Minute))
	got := top.List("", 0)
	want := []string{"gmail/rate limited/5", "yahoo/TSS04/3", "gmail/try later/2"}
	check := func(got []TopEntry, want []string) {
		t.Helper()
		var s []string
		for _, e := range got {
			s = append(s, fmt.Sprintf("%s/%s/%d", e.Site, e.Text, e.Count))
		}
		if strings.Join(s, ",") != strings.Join(want, ",") {
			t.Errorf("got %v, want %v", s, want)
		}
	}
	check(got, want)
	check(top.List("gmail", 0), []string{"gmail/rate limited/5", "gmail/try later/2"})
	check(top.List("", 1), []string{"gmail/rate limited/5"})
	check(top.List("nowhere", 5), nil)

	// Full: a new reply evicts the least counted ("try later", 2).
	add("orange", "OFR004_104", 1, t0.Add(3*time.Minute))
	if top.Len() != 3 {
		t.Fatalf("Len = %d", top.Len())
	}
	check(top.List("", 0), []string{"gmail/rate limited/5", "yahoo/TSS04/3", "orange/OFR004_104/1"})

	// Among equal counts the least recently seen goes.
	add("free", "a", 1, t0.Add(4*time.Minute)) // evicts orange (count 1, older)
	add("free", "b", 1, t0.Add(5*time.Minute)) // evicts free/a
	check(top.List("", 0), []string{"gmail/rate limited/5", "yahoo/TSS04/3", "free/b/1"})

	// Equal counts list the most recent first; Last and the verdict follow
	// the latest occurrence.
	add("yahoo", "TSS04", 2, t0.Add(6*time.Minute))
	top.AddAt(t0.Add(7*time.Minute), "gmail", 421, "4.7.0", "rate limited", Verdict{Reason: Unknown, Class: Hard})
	l := top.List("", 2)
	if l[0].Site != "gmail" || l[0].Count != 6 || !l[0].Last.Equal(t0.Add(7*time.Minute)) || l[0].Reason != Unknown || l[0].Class != Hard {
		t.Errorf("gmail entry: %+v", l[0])
	}
	if l[1].Site != "yahoo" || l[1].Count != 5 {
		t.Errorf("yahoo entry: %+v", l[1])
	}
	// Codes are part of the key.
	top.AddAt(t0, "gmail", 450, "4.7.0", "rate limited", v)
	for _, e := range top.List("gmail", 0) {
		if e.Code == 450 && e.Count != 1 {
			t.Errorf("450 counted with 421: %+v", e)
		}
	}
}

func TestTopBoundedAndConcurrent(t *testing.T) {
	top := NewTop(100)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				// A few frequent replies and a stream of unique ones.
				text := fmt.Sprintf("unique %d/%d", w, i)
				if i%2 == 0 {
					text = fmt.Sprintf("frequent %d", i%10)
				}
				top.Add("site", 550, "5.1.1", text, Verdict{Reason: UserUnknown, Class: Hard})
				if i%500 == 0 {
					top.List("", 5)
				}
			}
		}(w)
	}
	wg.Wait()
	if n := top.Len(); n != 100 {
		t.Fatalf("Len = %d, want 100", n)
	}
	l := top.List("site", 5)
	for _, e := range l {
		if !strings.HasPrefix(e.Text, "frequent ") || e.Count != 800 {
			t.Errorf("frequent reply lost or miscounted: %+v", e)
		}
	}
	// Long texts are capped, at a character boundary.
	top.Add("s", 550, "", strings.Repeat("é", 400), Verdict{})
	for _, e := range top.List("s", 1) {
		if len(e.Text) > maxTopText || !strings.HasPrefix(strings.Repeat("é", 400), e.Text) {
			t.Errorf("text not capped cleanly: %d bytes", len(e.Text))
		}
	}
}

func BenchmarkClassify(b *testing.B) {
	c, err := New(nil, true)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		tc := &realWorld[i%len(realWorld)]
		c.Classify(tc.code, tc.enhanced, tc.text)
		i++
	}
}

// BenchmarkClassifyUserUnknown is the commonest failure of a bulk campaign.
func BenchmarkClassifyUserUnknown(b *testing.B) {
	c, _ := New(nil, true)
	text := "<user@example.com>: Recipient address rejected: User unknown in local recipient table"
	b.ReportAllocs()
	for b.Loop() {
		c.Classify(550, "5.1.1", text)
	}
}

func BenchmarkNormalize(b *testing.B) {
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		Normalize(realWorld[i%len(realWorld)].text)
		i++
	}
}
