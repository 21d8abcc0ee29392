package spool

import "syscall"

// mmapFlags asks Linux to read the whole file in with sequential read-ahead
// when it is mapped. Open rebuilds bbolt's free list by walking every page and
// Load then reads every record; from a cold page cache that walk faults pages
// in one by one. Measured with 1M campaign recipients (220 MB): cold Open+Load
// 2.2 s without, 0.8 s with.
const mmapFlags = syscall.MAP_POPULATE
