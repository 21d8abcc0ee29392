package spool

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// sameMessage compares two messages field by field; times with Equal since
// the encoding keeps the instant, not the location.
func sameMessage(t *testing.T, got, want *Message) {
	t.Helper()
	if got.ID != want.ID || got.Sender != want.Sender || got.DeliveryID != want.DeliveryID ||
		got.Pool != want.Pool || got.Tenant != want.Tenant || got.Flags != want.Flags || got.Size != want.Size ||
		!got.Received.Equal(want.Received) || !got.Expires.Equal(want.Expires) ||
		len(got.Recipients) != len(want.Recipients) {
		t.Fatalf("message differs:\n got %+v\nwant %+v", got, want)
	}
	for i := range want.Recipients {
		g, w := got.Recipients[i], want.Recipients[i]
		if g.Addr != w.Addr || g.State != w.State || g.Attempts != w.Attempts ||
			!g.NextAttempt.Equal(w.NextAttempt) || g.LastCode != w.LastCode ||
			g.LastEnhanced != w.LastEnhanced || g.LastText != w.LastText ||
			!bytes.Equal(g.Vars, w.Vars) || (len(w.Vars) == 0) != (g.Vars == nil) {
			t.Fatalf("recipient %d differs:\n got %+v\nwant %+v", i, g, w)
		}
	}
}

func sampleMessage() *Message {
	now := time.Date(2026, 11, 2, 10, 30, 0, 123456789, time.UTC)
	return &Message{
		Sender:   "bounces+x@news.example.com",
		Received: now,
		Expires:  now.Add(5 * 24 * time.Hour),
		Pool:     "default",
		Flags:    3,
		Size:     2048,
		Recipients: []Recipient{
			{Addr: "a@example.org"},
			{Addr: "b@example.net", State: Bounced, Attempts: 2, NextAttempt: now.Add(time.Hour),
				LastCode: 550, LastEnhanced: "5.1.1", LastText: "user unknown"},
		},
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	long := strings.Repeat("x", 70000)
	many := make([]Recipient, 5000)
	for i := range many {
		many[i] = Recipient{Addr: "r" + strings.Repeat("y", i%50) + "@example.com", State: State(i % int(numStates)),
			Attempts: uint16(i), Vars: []byte(`{"n":` + strings.Repeat("1", i%7) + `}`)}
	}
	cases := []struct {
		name string
		m    *Message
	}{
		{"typical", sampleMessage()},
		{"zero everything", &Message{Recipients: []Recipient{{}}}},
		{"negative size, pre-epoch time", &Message{Size: -1, Received: time.Date(1960, 1, 1, 0, 0, 0, 1, time.UTC), Recipients: []Recipient{{Addr: "x"}}}},
		{"max fields", &Message{Flags: 255, Size: 1<<63 - 1, Recipients: []Recipient{{State: Cancelled, Attempts: 65535, LastCode: 65535}}}},
		{"campaign", &Message{DeliveryID: "camp-42", Sender: "s@x", Recipients: []Recipient{{Addr: "u@y", Vars: []byte(`{"first":"Ann"}`)}}}},
		{"unicode and long text", &Message{Sender: "ünï@例え.jp", Recipients: []Recipient{{Addr: "收件人@例子.中国", LastText: long}}}},
		{"many recipients", &Message{Recipients: many}},
		{"tenant", &Message{Tenant: "acme", DeliveryID: "camp-7", Pool: "p", Recipients: []Recipient{{Addr: "u@y"}, {Addr: "v@y", State: Delivered}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec, queued, err := encodeMeta(c.m)
			if err != nil {
				t.Fatal(err)
			}
			if len(rec) > encodedSize(c.m) {
				t.Fatalf("encoding %d bytes exceeds its bound %d", len(rec), encodedSize(c.m))
			}
			var d decoder
			var got Message
			if err := d.decode(rec, &got); err != nil {
				t.Fatal(err)
			}
			sameMessage(t, &got, c.m)
			q, err := queuedInRecord(rec)
			if err != nil || q != queued || q != queuedOf(c.m) {
				t.Fatalf("queuedInRecord = %d, %v; want %d", q, err, queued)
			}
		})
	}
}

// A message without a tenant is written as version 1, byte for byte what
// a build without tenants wrote (so such a build still reads it); one with
// a tenant as version 2.
func TestEncodeTenantVersion(t *testing.T) {
	m := sampleMessage()
	rec, _, err := encodeMeta(m)
	if err != nil {
		t.Fatal(err)
	}
	if rec[0] != metaVersion {
		t.Fatalf("no tenant: version %d, want %d", rec[0], metaVersion)
	}
	m.Tenant = "acme"
	rec2, _, err := encodeMeta(m)
	if err != nil {
		t.Fatal(err)
	}
	if rec2[0] != metaVersionTenant || len(rec2) != len(rec)+1+len("acme") {
		t.Fatalf("tenant: version %d, %d bytes (without: %d)", rec2[0], len(rec2), len(rec))
	}
	for _, cut := range []int{len(rec2) - 1, 10} {
		var got Message
		if err := (&decoder{}).decode(rec2[:cut], &got); err == nil {
			t.Errorf("a version 2 record cut at %d decoded", cut)
		}
	}
}

func TestEncodeRefusesInvalidState(t *testing.T) {
	m := sampleMessage()
	m.Recipients[1].State = numStates
	if _, _, err := encodeMeta(m); err == nil {
		t.Fatal("state out of range encoded")
	}
}

func TestDecodeMalformed(t *testing.T) {
	rec, _, err := encodeMeta(sampleMessage())
	if err != nil {
		t.Fatal(err)
	}
	bad := func(name string, b []byte) {
		t.Helper()
		var d decoder
		var m Message
		if err := d.decode(b, &m); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
		if _, err := queuedInRecord(b); err == nil {
			t.Errorf("%s: queuedInRecord without error", name)
		}
	}
	bad("empty", nil)
	for i := 1; i < len(rec); i++ {
		bad("truncated", rec[:i])
	}
	bad("trailing byte", append(bytes.Clone(rec), 0))
	wrongVersion := bytes.Clone(rec)
	wrongVersion[0] = 9
	bad("version", wrongVersion)
	// A huge recipient count in a short record must not allocate.
	bad("huge count", []byte{metaVersion, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	// State byte out of range: find it by building a one-recipient record.
	one, _, _ := encodeMeta(&Message{Recipients: []Recipient{{Addr: "a"}}})
	// layout: ver flags sender(0) recv(0) exp(0) deliv(0) pool(0) size(0) n(1) addrlen(1) 'a' state
	one[11] = byte(numStates)
	bad("state", one)
	if !errors.Is(errMalformed, errMalformed) {
		t.Fatal("unreachable")
	}
}

func FuzzDecodeMeta(f *testing.F) {
	for _, m := range []*Message{sampleMessage(), {Recipients: []Recipient{{Vars: []byte("v")}}}} {
		rec, _, err := encodeMeta(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(rec)
	}
	f.Add([]byte{metaVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		var d decoder
		var m Message
		err := d.decode(b, &m)
		q, qerr := queuedInRecord(b)
		if (err == nil) != (qerr == nil) {
			t.Fatalf("decode err %v but queuedInRecord err %v", err, qerr)
		}
		if err != nil {
			return
		}
		if q != queuedOf(&m) {
			t.Fatalf("queued %d vs %d", q, queuedOf(&m))
		}
		// What decodes must re-encode to a record that decodes the same.
		rec, _, err := encodeMeta(&m)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		var again Message
		if err := d.decode(rec, &again); err != nil {
			t.Fatalf("decode of re-encoding: %v", err)
		}
		sameMessage(t, &again, &m)
	})
}

func TestIDString(t *testing.T) {
	for _, c := range []struct {
		id ID
		s  string
	}{
		{0, "0000000000000000"},
		{1, "0000000000000001"},
		{0xdeadbeef, "00000000deadbeef"},
		{1<<64 - 1, "ffffffffffffffff"},
	} {
		if got := c.id.String(); got != c.s {
			t.Errorf("ID(%d).String() = %q, want %q", uint64(c.id), got, c.s)
		}
		if got, err := ParseID(c.s); err != nil || got != c.id {
			t.Errorf("ParseID(%q) = %v, %v", c.s, got, err)
		}
	}
	if got, err := ParseID("00000000DEADBEEF"); err != nil || got != 0xdeadbeef {
		t.Errorf("upper case: %v %v", got, err)
	}
	for _, s := range []string{"", "deadbeef", "00000000deadbeefX", "000000000000000g", "+000000000000001"} {
		if _, err := ParseID(s); err == nil {
			t.Errorf("ParseID(%q) accepted", s)
		}
	}
}

func TestState(t *testing.T) {
	want := map[State]string{Queued: "queued", Delivered: "delivered", Bounced: "bounced",
		Expired: "expired", Suppressed: "suppressed", Cancelled: "cancelled"}
	for s, name := range want {
		if s.String() != name {
			t.Errorf("%d: %q", s, s.String())
		}
		if s.Final() != (s != Queued) {
			t.Errorf("%s.Final() = %v", s, s.Final())
		}
	}
	if State(99).String() != "state(99)" {
		t.Error(State(99).String())
	}
}
