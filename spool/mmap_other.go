//go:build !linux

package spool

// mmapFlags: MAP_POPULATE is Linux-only; elsewhere pages fault in on demand.
const mmapFlags = 0
