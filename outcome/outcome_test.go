package outcome

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/bounce"
	"github.com/penstock-mta/penstock/dsn"
	"github.com/penstock-mta/penstock/events"
	"github.com/penstock-mta/penstock/quarantine"
	"github.com/penstock-mta/penstock/queue"
	"github.com/penstock-mta/penstock/spool"
)

// fakes records every call the stage makes.
type fakes struct {
	delivered []string
	failures  []quarantine.Failure
	finals    []queue.Outcome
	// quarantinedAtFinal: how many quarantine calls had been made when
	// each campaign final was counted.
	quarantinedAtFinal []int
	observed           []time.Duration
	injected           []injected
	settings           Settings
}

type injected struct {
	to   string
	body []byte
}

func (f *fakes) Delivered(addr string) error { f.delivered = append(f.delivered, addr); return nil }
func (f *fakes) Failure(addr string, q quarantine.Failure) (quarantine.Entry, bool, error) {
	f.failures = append(f.failures, q)
	return quarantine.Entry{}, false, nil
}
func (f *fakes) Final(msg *spool.Message, o queue.Outcome, now time.Time) {
	f.finals = append(f.finals, o)
	f.quarantinedAtFinal = append(f.quarantinedAtFinal, len(f.delivered)+len(f.failures))
}
func (f *fakes) ObserveDelivered(d time.Duration) { f.observed = append(f.observed, d) }
func (f *fakes) Body(id spool.ID) ([]byte, error) {
	return []byte("From: app@example.org\r\nSubject: invoice 42\r\n\r\nthe body\r\n"), nil
}

var now = time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)

func newStage(f *fakes) *Stage {
	f.settings = Settings{DSN: true, Hostname: "penstock.test"}
	return New(Deps{Quarantine: f, Campaigns: f, Metrics: f, Bodies: f,
		Inject: func(ctx context.Context, to string, body []byte, _ time.Time) error {
			f.injected = append(f.injected, injected{to, body})
			return nil
		},
		Settings: func() Settings { return f.settings },
		Now:      func() time.Time { return now }})
}

func message(flags uint8, deliveryID string) *spool.Message {
	return &spool.Message{ID: 7, Sender: "app@example.org", Received: now.Add(-time.Minute), Flags: flags, DeliveryID: deliveryID,
		Recipients: []spool.Recipient{{Addr: "user@example.net"}}}
}

// A delivery resets the address's errors, observes the latency and, for a
// campaign, counts; no DSN.
func TestDelivered(t *testing.T) {
	f := &fakes{}
	s := newStage(f)
	s.Observe(message(FlagDSN, "d1"), 0, queue.Outcome{Delivered: true, Final: true, Code: 250}, "site")
	if len(f.delivered) != 1 || len(f.observed) != 1 || f.observed[0] != time.Minute {
		t.Errorf("delivered %v, observed %v; want one reset and a latency of 1m", f.delivered, f.observed)
	}
	if len(f.finals) != 1 || len(f.failures) != 0 || len(f.injected) != 0 {
		t.Errorf("finals %d, failures %d, DSNs %d; want 1, 0, 0", len(f.finals), len(f.failures), len(f.injected))
	}
}

// Only failures about the address count toward the quarantine; expiry
// and cancellation never do.
func TestQuarantineCounts(t *testing.T) {
	cases := []struct {
		name string
		o    queue.Outcome
		want bool
	}{
		{"hard", queue.Outcome{Code: 550, Verdict: bounce.Verdict{Class: bounce.Hard, Reason: bounce.UserUnknown}}, true},
		{"soft mailbox full", queue.Outcome{Code: 452, Verdict: bounce.Verdict{Class: bounce.Soft, Reason: bounce.MailboxFull}}, true},
		{"soft other", queue.Outcome{Code: 421, Verdict: bounce.Verdict{Class: bounce.Soft, Reason: bounce.Reason("reputation")}}, false},
		{"expired", queue.Outcome{Expired: true, Final: true, Verdict: bounce.Verdict{Class: bounce.Hard}}, false},
		{"cancelled", queue.Outcome{Cancelled: true, Final: true, Verdict: bounce.Verdict{Class: bounce.Hard}}, false},
	}
	for _, c := range cases {
		f := &fakes{}
		newStage(f).Observe(message(0, ""), 0, c.o, "site")
		if got := len(f.failures) == 1; got != c.want {
			t.Errorf("%s: counted %v, want %v", c.name, got, c.want)
		}
		if c.want && (f.failures[0].Site != "site" || f.failures[0].Code != c.o.Code) {
			t.Errorf("%s: failure %+v, want the site and code", c.name, f.failures[0])
		}
	}
}

// A final failure of relayed mail sends one RFC 3464 report to the sender
// from the null sender; the other cases send none.
func TestDSN(t *testing.T) {
	hard := queue.Outcome{Final: true, Code: 550, Enhanced: "5.1.1", Text: "user unknown",
		Verdict: bounce.Verdict{Class: bounce.Hard, Reason: bounce.UserUnknown}}
	f := &fakes{}
	newStage(f).Observe(message(FlagDSN, ""), 0, hard, "site")
	if len(f.injected) != 1 || f.injected[0].to != "app@example.org" {
		t.Fatalf("DSNs %+v, want one to the sender", f.injected)
	}
	rep, err := dsn.Parse(f.injected[0].body)
	if err != nil {
		t.Fatalf("the DSN does not parse: %v", err)
	}
	if len(rep.Recipients) != 1 || rep.Recipients[0].Status != "5.1.1" || rep.Recipients[0].Action != "failed" ||
		!strings.Contains(rep.Recipients[0].Diagnostic, "550 5.1.1 user unknown") {
		t.Errorf("DSN recipients %+v, want 5.1.1 failed with the reply", rep.Recipients)
	}
	if !strings.Contains(string(f.injected[0].body), "Subject: invoice 42") {
		t.Error("the DSN does not return the original headers")
	}

	// Expired: 4.4.7, with the last reply as the diagnostic.
	f = &fakes{}
	m := message(FlagDSN, "")
	m.Recipients[0].LastCode, m.Recipients[0].LastEnhanced, m.Recipients[0].LastText = 451, "4.7.1", "greylisted"
	newStage(f).Observe(m, 0, queue.Outcome{Final: true, Expired: true}, "site")
	if len(f.injected) != 1 {
		t.Fatalf("expired: %d DSNs, want 1", len(f.injected))
	}
	if rep, err := dsn.Parse(f.injected[0].body); err != nil || rep.Recipients[0].Status != "4.4.7" ||
		!strings.Contains(rep.Recipients[0].Diagnostic, "451 4.7.1 greylisted") {
		t.Errorf("expired DSN: %+v, %v; want 4.4.7 with the last reply", rep, err)
	}

	for _, c := range []struct {
		name string
		m    *spool.Message
		o    queue.Outcome
		off  bool
	}{
		{"campaign (no flag)", message(0, "d1"), hard, false},
		{"null sender", func() *spool.Message { m := message(FlagDSN, ""); m.Sender = ""; return m }(), hard, false},
		{"not final", message(FlagDSN, ""), queue.Outcome{Code: 451}, false},
		{"cancelled", message(FlagDSN, ""), queue.Outcome{Final: true, Cancelled: true}, false},
		{"[delivery] dsn = false", message(FlagDSN, ""), hard, true},
	} {
		f := &fakes{}
		s := newStage(f)
		if c.off {
			f.settings.DSN = false
		}
		s.Observe(c.m, 0, c.o, "site")
		if len(f.injected) != 0 {
			t.Errorf("%s: %d DSNs sent, want none", c.name, len(f.injected))
		}
	}
}

// A DSN that cannot be queued is logged, not retried, and does not stop
// the other updates.
func TestDSNInjectError(t *testing.T) {
	f := &fakes{}
	s := newStage(f)
	s.d.Inject = func(context.Context, string, []byte, time.Time) error { return errors.New("disk full") }
	s.Observe(message(FlagDSN, "d1"), 0, queue.Outcome{Final: true, Code: 550, Verdict: bounce.Verdict{Class: bounce.Hard}}, "site")
	if len(f.failures) != 1 || len(f.finals) != 1 {
		t.Errorf("failures %d, finals %d; want 1 and 1", len(f.failures), len(f.finals))
	}
}

// FeedTop counts synchronous failure replies, not asynchronous bounces
// (counted where they are parsed) nor deliveries.
func TestFeedTop(t *testing.T) {
	top := bounce.NewTop(100)
	ch := make(chan *events.Record, 4)
	ch <- &events.Record{Type: events.Bounce, Time: now, Site: "s", Code: 550, EnhancedCode: "5.1.1", Text: "no such user 1", Class: "hard"}
	ch <- &events.Record{Type: events.TransientFailure, Time: now, Site: "s", Code: 421, Text: "try later"}
	ch <- &events.Record{Type: events.Bounce, Time: now, Site: "s", Code: 550, Text: "x", Status: "asynchronous bounce"}
	ch <- &events.Record{Type: events.Delivery, Time: now, Site: "s", Code: 250, Text: "ok"}
	close(ch)
	FeedTop(top, ch)
	if got := top.List("s", 10); len(got) != 2 {
		t.Errorf("top: %+v, want the bounce and the deferral", got)
	}
}

// A campaign's counts hear of a final recipient after its quarantine
// entry is written: a reader who sees the count final finds the entry
// (the counts came first once, and a test reading both failed under load).
func TestCampaignFinalAfterQuarantine(t *testing.T) {
	for _, o := range []queue.Outcome{
		{Delivered: true, Final: true, Code: 250},
		{Final: true, Code: 550, Verdict: bounce.Verdict{Class: bounce.Hard, Reason: bounce.UserUnknown}},
	} {
		f := &fakes{}
		newStage(f).Observe(message(0, "d1"), 0, o, "site")
		if len(f.quarantinedAtFinal) != 1 || f.quarantinedAtFinal[0] != 1 {
			t.Errorf("code %d: quarantine calls before the campaign's final: %v, want [1]", o.Code, f.quarantinedAtFinal)
		}
	}
}
