package api

import (
	"io"

	"github.com/penstock-mta/penstock/quarantine"
	"github.com/penstock-mta/penstock/reports"
)

// Reports is an optional part of Deps: what the bounce listener did
// with the reports it received (acted on, ignored by reason, unverified),
// shown beside the bounce replies.
type Reports interface {
	Reports() reports.Stats
}

// Quarantine is the quarantine store as the API uses it; package
// quarantine's Store is one as it is.
type Quarantine interface {
	List(f quarantine.Filter, limit int, after string) ([]quarantine.Entry, error)
	Get(addr string) (quarantine.Entry, bool)
	Add(addr string, st quarantine.Status, note string) error
	Remove(addr string) error
	Import(r io.Reader, st quarantine.Status, note string) (int, error)
	Release(f quarantine.Filter, note string) (int, error)
	Counts() map[quarantine.Status]int
}
