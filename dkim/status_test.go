package dkim

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"
)

// TestDKIMDomainCounts: the signing stage counts outcomes per From domain;
// the last hour forgets what is older than an hour, the last day what is
// older than a day, and a domain silent for a day is dropped.
func TestDKIMDomainCounts(t *testing.T) {
	now := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	d := NewStage(func() time.Time { return now }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	signed := Result{FromDomain: "a.example", Aligned: true, Signatures: []Signature{{Domain: "a.example"}}}
	third := Result{FromDomain: "b.example", Signatures: []Signature{{Domain: "pool.example"}}}
	noKey := Result{FromDomain: "b.example", Reason: ReasonNoKey}
	d.count(signed, "d=a.example s=s1 a=rsa-sha256")
	d.count(signed, "d=a.example s=s1 a=rsa-sha256")
	d.count(third, "d=pool.example s=p a=ed25519-sha256")
	d.count(noKey, "")
	d.count(Result{Reason: ReasonNoFrom}, "")

	now = now.Add(2 * time.Hour) // out of the last hour, still in the day
	d.count(signed, "d=a.example s=s2 a=rsa-sha256")

	got := d.Domains()
	if len(got) != 3 || got[0].Domain != OtherDomain || got[1].Domain != "a.example" || got[2].Domain != "b.example" {
		t.Fatalf("domains = %+v", got)
	}
	a, b, other := got[1], got[2], got[0]
	if a.LastHour.Signed != 1 || a.LastDay.Signed != 3 || a.Status != "signed" || a.SignedBy != "d=a.example s=s2 a=rsa-sha256" {
		t.Errorf("a.example = %+v", a)
	}
	if b.LastHour.ThirdParty != 0 || b.LastDay.ThirdParty != 1 || b.LastDay.Unsigned[ReasonNoKey] != 1 || b.Status != "mixed" {
		t.Errorf("b.example = %+v", b)
	}
	if other.LastDay.Unsigned[ReasonNoFrom] != 1 || other.Status != "unsigned" {
		t.Errorf("(other) = %+v", other)
	}

	now = now.Add(23*time.Hour + time.Minute) // b.example's last message is now over a day old
	got = d.Domains()
	if len(got) != 1 || got[0].Domain != "a.example" || got[0].LastDay.Signed != 1 || got[0].LastHour.Signed != 0 {
		t.Fatalf("a day later: %+v", got)
	}
}

// TestDKIMDomainBound: past maxDomains From domains, the rest count
// under one line, so a flood of From domains cannot grow memory.
func TestDKIMDomainBound(t *testing.T) {
	now := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	d := NewStage(func() time.Time { return now }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for i := range maxDomains + 50 {
		d.count(Result{FromDomain: fmt.Sprintf("d%d.example", i), Reason: ReasonNoKey}, "")
	}
	got := d.Domains()
	if len(got) != maxDomains+1 {
		t.Fatalf("%d domains, want %d", len(got), maxDomains+1)
	}
	if got[0].Domain != OtherDomain || got[0].LastHour.Unsigned[ReasonNoKey] != 50 {
		t.Errorf("first = %+v, want (other) with the 50 past the bound", got[0])
	}
}
