package quarantine

import (
	"encoding/json"
	"testing"
	"time"
)

// sampleEntry is a typical quarantined entry: a few soft errors, then a hard
// one, three status changes.
func sampleEntry() Entry {
	t := time.Date(2025, 3, 1, 12, 0, 0, 123, time.UTC)
	return Entry{
		Address: "john.doe1234@example.com", Status: Quarantined, Errors: 3, Reason: "user_unknown",
		LastCode: 550, LastEnhanced: "5.1.1",
		LastText:      "The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces. For more information, go to https://support.google.com/mail/?p=NoSuchUser",
		LastSite:      "gmail-smtp-in.l.google.com",
		LastMessageID: "0000019a3f2c8b10",
		First:         t, Updated: t.Add(72 * time.Hour), LastSignificant: t.Add(72 * time.Hour),
		History: []HistoryItem{
			{t, Valid, WithErrors, "soft failure: 452 4.2.2 mailbox full (mailbox_full) at gmail"},
			{t.Add(48 * time.Hour), WithErrors, Valid, "delivered"},
			{t.Add(72 * time.Hour), Valid, Quarantined, "hard failure: 550 5.1.1 The email account that you tried to reach does not exist. (user_unknown) at gmail"},
		},
	}
}

func TestEncodingRoundTrip(t *testing.T) {
	for _, e := range []Entry{sampleEntry(), {Address: "a@b", Status: Valid}, {Address: "a@b", Status: Allowlisted, Note: "seed"}} {
		b := encode(&e)
		got, err := decode(e.Address, b)
		if err != nil {
			t.Fatal(err)
		}
		if !equalEntry(got, e) {
			t.Errorf("round trip:\n got  %+v\n want %+v", got, e)
		}
		h, d := decodeHead(b)
		if d.err != nil || codeStatus(h.status) != e.Status || string(h.reason) != e.Reason || int(h.errors) != e.Errors {
			t.Errorf("head %+v %v", h, d.err)
		}
		// Every truncation and a trailing byte are refused, never a panic.
		for i := range len(b) {
			if _, err := decode("a@b", b[:i]); err == nil {
				t.Errorf("truncated at %d of %d: accepted", i, len(b))
			}
		}
		if _, err := decode("a@b", append(b, 0)); err == nil {
			t.Error("trailing byte accepted")
		}
	}
	bad := encode(&Entry{Status: Valid})
	bad[1] = numStatus
	if _, err := decode("a@b", bad); err == nil {
		t.Error("bad status accepted")
	}
}

// BenchmarkEncoding compares the binary record with JSON for a typical entry:
// the sizes are reported as bytes/record.
func BenchmarkEncoding(b *testing.B) {
	e := sampleEntry()
	bin := encode(&e)
	js, _ := json.Marshal(&e)
	b.Run("binary/encode", func(b *testing.B) {
		for b.Loop() {
			encode(&e)
		}
		b.ReportMetric(float64(len(bin)), "bytes/record")
	})
	b.Run("json/encode", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(&e)
		}
		b.ReportMetric(float64(len(js)), "bytes/record")
	})
	b.Run("binary/decode", func(b *testing.B) {
		for b.Loop() {
			_, _ = decode(e.Address, bin)
		}
	})
	b.Run("binary/head", func(b *testing.B) {
		for b.Loop() {
			decodeHead(bin)
		}
	})
	b.Run("json/decode", func(b *testing.B) {
		for b.Loop() {
			var x Entry
			_ = json.Unmarshal(js, &x)
		}
	})
}
