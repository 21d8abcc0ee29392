package flow

import (
	"log/slog"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/events"
)

type records []events.Record

func (r *records) Write(rec *events.Record) { *r = append(*r, *rec) }

func TestJournalRecordsChangesAndPublishes(t *testing.T) {
	var got records
	var published []Change
	j := &Journal{Log: &got, Logger: slog.New(slog.DiscardHandler), Publish: func(ch Change) { published = append(published, ch) }}
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	j.Change(Change{Time: now, Site: "mx.example", Source: "ip1", From: Normal, To: Backoff, Reason: "error ratio 0.60"})
	j.Local(LocalProblem{Time: now, Active: true, Detail: "DNS fails for 40 domains"})
	j.Local(LocalProblem{Time: now, Active: false, Detail: "local problem cleared"})

	if len(published) != 1 || published[0].Site != "mx.example" {
		t.Fatalf("published %+v, want the one change", published)
	}
	if len(got) != 3 {
		t.Fatalf("%d records, want 3: %+v", len(got), got)
	}
	if r := got[0]; r.Type != events.FlowControl || r.Site != "mx.example" || r.SourceIP != "ip1" || r.State != Backoff ||
		r.Status != "normal -> backoff" || r.Detail != "error ratio 0.60" {
		t.Errorf("flow record %+v", r)
	}
	if got[1].Type != events.LocalProblem || got[1].Status != "local problem" || got[2].Status != "cleared" {
		t.Errorf("local-problem records %+v %+v", got[1], got[2])
	}
}
