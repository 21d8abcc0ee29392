package api

import (
	"io"

	"github.com/penstock-mta/penstock/bounce"
	"github.com/penstock-mta/penstock/quarantine"
	"github.com/penstock-mta/penstock/reports"
)

// Reports is an optional part of the Backend: what the bounce listener did
// with the reports it received (acted on, ignored by reason, unverified),
// shown beside the bounce replies.
type Reports interface {
	Reports() reports.Stats
}

// Quarantine is the quarantine and bounce-statistics part of the Backend.
type Quarantine interface {
	QuarantineList(f quarantine.Filter, limit int, after string) ([]quarantine.Entry, error)
	QuarantineGet(addr string) (quarantine.Entry, bool)
	QuarantineAdd(addr string, st quarantine.Status, note string) error
	QuarantineRemove(addr string) error
	QuarantineImport(r io.Reader, st quarantine.Status, note string) (int, error)
	QuarantineRelease(f quarantine.Filter, note string) (int, error)
	QuarantineCounts() map[quarantine.Status]int
	// Bounces lists the most frequent normalised failure replies, of one
	// site or of all ("").
	Bounces(site string, n int) []bounce.TopEntry
}
