//go:build !linux

package spool

// mmapFlags: MAP_POPULATE is Linux-only; elsewhere pages fault in on demand.
const mmapFlags = 0

// unmapResident is a Linux measure (see mmap_linux.go); elsewhere the
// kernel's own reclaim decides.
func (s *Spool) unmapResident() {}
