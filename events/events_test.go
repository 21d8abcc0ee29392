package events

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"
)

// decodeLines reads a delivery log file and decodes every line with
// encoding/json, failing on any line that is not a valid JSON object.
func decodeLines(t *testing.T, path string) []Record {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []Record
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !json.Valid(line) {
			t.Fatalf("invalid JSON line: %q", line)
		}
		var r Record
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("decode %q: %v", line, err)
		}
		out = append(out, r)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Fatalf("file does not end with a newline")
	}
	return out
}

// sameRecord compares after a JSON round trip: times by instant, strings as
// encoding/json would deliver them (invalid UTF-8 replaced).
func sameRecord(t *testing.T, got, want Record) {
	t.Helper()
	if !got.Time.Equal(want.Time) {
		t.Errorf("time: got %v want %v", got.Time, want.Time)
	}
	got.Time, want.Time = time.Time{}, time.Time{}
	want = validUTF8(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("record mismatch:\n got %+v\nwant %+v", got, want)
	}
}

// validUTF8 applies to every string field what a JSON round trip does:
// each invalid byte becomes U+FFFD.
func validUTF8(r Record) Record {
	v := reflect.ValueOf(&r).Elem()
	for i := 0; i < v.NumField(); i++ {
		if f := v.Field(i); f.Kind() == reflect.String {
			f.SetString(string([]rune(f.String())))
		}
	}
	return r
}

func fullRecord(i int) Record {
	return Record{
		Type: Bounce, Time: time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC),
		ID: fmt.Sprintf("m%d", i), DeliveryID: "d1", Sender: "news@example.com",
		Recipient: fmt.Sprintf("user%d@example.org", i), Site: "gmail-smtp-in.l.google.com",
		MXHost: "gmail-smtp-in.l.google.com", MXIP: "192.0.2.7", SourceIP: "198.51.100.1",
		Rule: "google", Code: 550, EnhancedCode: "5.1.1",
		Text:   "The email account that you tried to reach does not exist.\r\n\t\"quoted\" \\ <x@y>",
		Reason: "user_unknown", Class: "hard", Attempt: 3,
		Status: "Messages queued (retry scheduled)", Detail: "d", State: "backoff",
		Size: 2048, TLS: true, TLSPolicy: "rule opportunistic", ConnUse: 2,
	}
}

func TestEncodeMatchesStdlib(t *testing.T) {
	recs := []Record{
		{Type: Delivery, Time: time.Date(2025, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))},
		fullRecord(1),
		{Type: FlowControl, Time: time.Unix(0, 1).UTC(), Code: -1, Attempt: -5, Size: -7, ConnUse: -3, State: "suspended"},
	}
	for _, r := range recs {
		ours := appendRecord(nil, &r)
		var a, b map[string]any
		if err := json.Unmarshal(ours, &a); err != nil {
			t.Fatalf("ours invalid: %v: %s", err, ours)
		}
		std, _ := json.Marshal(r)
		if err := json.Unmarshal(std, &b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("differs from encoding/json:\n ours %s\n  std %s", ours, std)
		}
	}
}

func TestEscaping(t *testing.T) {
	cases := []struct{ in, want string }{
		{"plain", `"plain"`},
		{"", `""`},
		{`a"b\c`, `"a\"b\\c"`},
		{"\n\r\t", `"\n\r\t"`},
		{"\x00\x01\x1f\x7f", `"\u0000\u0001\u001f` + "\x7f" + `"`},
		{"<addr> & co", `"<addr> & co"`},
		{"é中😀", `"é中😀"`},
		{"bad\xffbyte", `"bad\ufffdbyte"`},
		{"\xe2\x82", `"\ufffd\ufffd"`}, // truncated sequence: one U+FFFD per byte
		{"\u2028\u2029", `"\u2028\u2029"`},
		{"\xed\xa0\x80", `"\ufffd\ufffd\ufffd"`}, // a UTF-16 surrogate is not UTF-8
		// Longer than 8 bytes, so the word-at-a-time scan runs and must stop
		// at each special byte wherever it falls.
		{"01234567\"89abcdef\\ghijklmn\x1fopqrstuv\xffwxyzABCD", `"01234567\"89abcdef\\ghijklmn\u001fopqrstuv\ufffdwxyzABCD"`},
		{"user@example.com: Recipient address rejected", `"user@example.com: Recipient address rejected"`},
		{"abcdefg\u00e9abcdefgh", "\"abcdefg\u00e9abcdefgh\""},
	}
	for _, c := range cases {
		got := string(appendString(nil, c.in))
		if got != c.want {
			t.Errorf("appendString(%q) = %s, want %s", c.in, got, c.want)
		}
		var back string
		if err := json.Unmarshal([]byte(got), &back); err != nil {
			t.Errorf("%s: %v", got, err)
		} else if back != string([]rune(c.in)) {
			t.Errorf("round trip of %q gave %q", c.in, back)
		}
	}
}

func FuzzStringRoundTrip(f *testing.F) {
	for _, s := range []string{"", "a", "\x00", "\"\\", "\xff\xfe", "\u2028", "é\xc3", "<>&", "\t\n", "01234567\"89abcdef\x00ghijklmn\xc3\xa9opqrstuv\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		enc := appendString(nil, s)
		if !json.Valid(enc) {
			t.Fatalf("invalid JSON for %q: %s", s, enc)
		}
		if !utf8.Valid(enc) {
			t.Fatalf("output not UTF-8 for %q", s)
		}
		if bytes.ContainsAny(enc, "\n\r") {
			t.Fatalf("raw line break in output for %q", s)
		}
		var back string
		if err := json.Unmarshal(enc, &back); err != nil {
			t.Fatal(err)
		}
		if want := string([]rune(s)); back != want {
			t.Fatalf("round trip %q -> %q, want %q", s, back, want)
		}
		// The whole record too, with s in a field.
		r := Record{Type: Type(s), Time: time.Unix(1, 0).UTC(), Text: s, Recipient: s}
		line := appendRecord(nil, &r)
		var got Record
		if err := json.Unmarshal(line, &got); err != nil {
			t.Fatalf("record: %v: %s", err, line)
		}
		sameRecord(t, got, r)
	})
}

func TestConcurrentWrites(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	const workers, per = 8, 500
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				r := fullRecord(w*per + i)
				l.Write(&r)
				if i%100 == 0 {
					if err := l.Flush(); err != nil {
						t.Error(err)
					}
				}
			}
		}(w)
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got := decodeLines(t, filepath.Join(dir, fileName))
	if len(got) != workers*per {
		t.Fatalf("got %d lines, want %d", len(got), workers*per)
	}
	seen := make(map[string]bool)
	for _, r := range got {
		var i int
		fmt.Sscanf(r.ID, "m%d", &i)
		sameRecord(t, r, fullRecord(i))
		if seen[r.ID] {
			t.Fatalf("duplicate %s", r.ID)
		}
		seen[r.ID] = true
	}
}

func TestFillsTimeAndFlushesOnClose(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	l, err := Open(dir, Options{FlushInterval: time.Hour, Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	r := Record{Type: Reception, ID: "abc", Size: 10}
	l.Write(&r)
	if !r.Time.Equal(at) {
		t.Fatalf("Time not filled: %v", r.Time)
	}
	// With an hour-long interval nothing reaches the file before Close.
	if data, _ := os.ReadFile(filepath.Join(dir, fileName)); len(data) != 0 {
		t.Fatalf("written before flush: %q", data)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got := decodeLines(t, filepath.Join(dir, fileName))
	if len(got) != 1 {
		t.Fatalf("got %d records", len(got))
	}
	sameRecord(t, got[0], r)
	// Writes after Close are dropped, not panics.
	l.Write(&Record{Type: Delivery})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestBackgroundFlush(t *testing.T) {
	dir := t.TempDir()
	flushed := make(chan struct{}, 1)
	l, err := Open(dir, Options{FlushInterval: 5 * time.Millisecond, afterFlush: func() {
		select {
		case flushed <- struct{}{}:
		default:
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Write(&Record{Type: Delivery, ID: "x"})
	deadline := time.After(5 * time.Second)
	for i := 0; i < 1000; i++ { // bounded: each round waits for one flush
		select {
		case <-flushed:
		case <-deadline:
			t.Fatal("no background flush")
		}
		if data, _ := os.ReadFile(filepath.Join(dir, fileName)); bytes.Contains(data, []byte(`"id":"x"`)) {
			return
		}
	}
	t.Fatal("record never reached the file")
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	var clock atomic.Pointer[time.Time]
	set := func(t time.Time) { clock.Store(&t) }
	now := func() time.Time { return *clock.Load() }
	day1 := time.Date(2025, 3, 9, 23, 59, 59, 0, time.UTC)
	set(day1)
	l, err := Open(dir, Options{FlushInterval: time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	l.Write(&Record{Type: Delivery, ID: "a"})
	// A record's own odd time does not move the rotation: the Log's clock does.
	l.Write(&Record{Type: Delivery, ID: "odd", Time: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)})
	set(day1.Add(2 * time.Second)) // 2025-03-10
	l.Write(&Record{Type: Delivery, ID: "b"})
	set(day1.Add(24 * time.Hour)) // still 2025-03-10 at 23:59:59
	l.Write(&Record{Type: Delivery, ID: "c"})
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	set(day1.Add(48 * time.Hour)) // 2025-03-11
	l.Write(&Record{Type: Delivery, ID: "d"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ids := func(name string) string {
		var s []string
		for _, r := range decodeLines(t, filepath.Join(dir, name)) {
			s = append(s, r.ID)
		}
		return strings.Join(s, ",")
	}
	if got := ids("delivery-20250309.log"); got != "a,odd" {
		t.Errorf("20250309: %q", got)
	}
	if got := ids("delivery-20250310.log"); got != "b,c" {
		t.Errorf("20250310: %q", got)
	}
	if got := ids(fileName); got != "d" {
		t.Errorf("current: %q", got)
	}

	// A restart on a later day archives the leftover file first.
	old := time.Date(2025, 3, 11, 10, 0, 0, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(dir, fileName), old, old); err != nil {
		t.Fatal(err)
	}
	set(time.Date(2025, 3, 12, 8, 0, 0, 0, time.UTC))
	l, err = Open(dir, Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	l.Write(&Record{Type: Delivery, ID: "e"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := ids("delivery-20250311.log"); got != "d" {
		t.Errorf("20250311: %q", got)
	}
	if got := ids(fileName); got != "e" {
		t.Errorf("current after restart: %q", got)
	}
}

func TestSubscribers(t *testing.T) {
	l, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	fast, cancelFast := l.Subscribe(100)
	slow, _ := l.Subscribe(1) // never read until the end
	const n = 50
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < n; i++ {
			l.Write(&Record{Type: Delivery, ID: fmt.Sprint(i)})
		}
	}()
	select {
	case <-done: // the writer finished although slow is full
	case <-time.After(10 * time.Second):
		t.Fatal("writer blocked by a slow subscriber")
	}
	for i := 0; i < n; i++ {
		select {
		case r := <-fast:
			if r.ID != fmt.Sprint(i) {
				t.Fatalf("fast got %q want %d", r.ID, i)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("fast subscriber missed a record")
		}
	}
	if got := l.Dropped(); got != n-1 {
		t.Errorf("Dropped = %d, want %d", got, n-1)
	}
	if r := <-slow; r.ID != "0" {
		t.Errorf("slow got %q", r.ID)
	}
	cancelFast()
	cancelFast() // idempotent
	if _, ok := <-fast; ok {
		t.Error("fast channel still open after cancel")
	}
	l.Write(&Record{Type: Delivery}) // no send on the cancelled channel
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for range slow { // Close closes the remaining subscriptions
	}
	c, cancel := l.Subscribe(1)
	if _, ok := <-c; ok {
		t.Error("subscription after Close is open")
	}
	cancel()
}

// A subscriber's record is a copy taken at Write: the writer may reuse its
// Record at once, and every subscriber sees the same values.
func TestSubscriberCopy(t *testing.T) {
	l := Discard()
	a, _ := l.Subscribe(1)
	b, _ := l.Subscribe(1)
	r := &Record{Type: Delivery, ID: "first", Recipient: "x@y"}
	l.Write(r)
	r.ID, r.Recipient = "changed", "z@y"
	for _, c := range []<-chan *Record{a, b} {
		got := <-c
		if got == r || got.ID != "first" || got.Recipient != "x@y" || got.Time.IsZero() {
			t.Fatalf("subscriber got %+v (writer's record %p, got %p)", got, r, got)
		}
	}
}

func TestDiscard(t *testing.T) {
	l := Discard()
	c, _ := l.Subscribe(1)
	l.Write(&Record{Type: Suppressed, Recipient: "a@b"})
	if r := <-c; r.Recipient != "a@b" || r.Time.IsZero() {
		t.Fatalf("got %+v", r)
	}
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkEncode(b *testing.B) {
	r := fullRecord(1)
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = appendRecord(buf[:0], &r)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkEncodeStdlib(b *testing.B) {
	r := fullRecord(1)
	var n int
	b.ReportAllocs()
	for b.Loop() {
		out, _ := json.Marshal(&r)
		n = len(out)
	}
	b.SetBytes(int64(n))
}

func BenchmarkWrite(b *testing.B) {
	l, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	r := fullRecord(1)
	b.ReportAllocs()
	for b.Loop() {
		l.Write(&r)
	}
}

func BenchmarkWriteParallel(b *testing.B) {
	l, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := fullRecord(1)
		for pb.Next() {
			l.Write(&r)
		}
	})
}
