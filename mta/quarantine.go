package mta

import (
	"io"

	"github.com/penstock-mta/penstock/bounce"
	"github.com/penstock-mta/penstock/quarantine"
)

func (b backend) QuarantineList(f quarantine.Filter, limit int, after string) ([]quarantine.Entry, error) {
	return b.m.Quarantine.List(f, limit, after)
}
func (b backend) QuarantineGet(addr string) (quarantine.Entry, bool) { return b.m.Quarantine.Get(addr) }
func (b backend) QuarantineAdd(addr string, st quarantine.Status, note string) error {
	return b.m.Quarantine.Add(addr, st, note)
}
func (b backend) QuarantineRemove(addr string) error { return b.m.Quarantine.Remove(addr) }
func (b backend) QuarantineImport(r io.Reader, st quarantine.Status, note string) (int, error) {
	return b.m.Quarantine.Import(r, st, note)
}
func (b backend) QuarantineRelease(f quarantine.Filter, note string) (int, error) {
	return b.m.Quarantine.Release(f, note)
}
func (b backend) QuarantineCounts() map[quarantine.Status]int  { return b.m.Quarantine.Counts() }
func (b backend) Bounces(site string, n int) []bounce.TopEntry { return b.m.bounceTop.List(site, n) }
