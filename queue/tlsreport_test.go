package queue

import (
	"net/netip"
	"testing"
	"time"
)

func TestTLSMemory(t *testing.T) {
	var tm tlsMemory
	now := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	ip := netip.MustParseAddr("192.0.2.1")
	if _, ok := tm.broken(ip, now); ok {
		t.Fatal("remembered before any failure")
	}
	if !tm.remember(ip, brokenTLS{until: now.Add(time.Hour), typ: "validation-failure"}, now) {
		t.Fatal("first failure not fresh")
	}
	if tm.remember(ip, brokenTLS{until: now.Add(time.Hour)}, now.Add(time.Minute)) {
		t.Fatal("second failure within the period is fresh (logged twice)")
	}
	if _, ok := tm.broken(ip, now.Add(59*time.Minute)); !ok {
		t.Fatal("forgotten within the period")
	}
	if _, ok := tm.broken(ip, now.Add(2*time.Hour)); ok {
		t.Fatal("remembered after the period")
	}
	// Bounded: live entries beyond the limit are not kept; expired ones
	// make room.
	for i := range maxTLSMemory + 10 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		tm.remember(a, brokenTLS{until: now.Add(time.Hour)}, now)
	}
	if n := len(tm.m); n != maxTLSMemory {
		t.Fatalf("%d entries, limit %d", n, maxTLSMemory)
	}
	later := now.Add(2 * time.Hour)
	tm.remember(ip, brokenTLS{until: later.Add(time.Hour)}, later)
	if _, ok := tm.broken(ip, later); !ok || len(tm.m) != 1 {
		t.Fatalf("after expiry: %d entries", len(tm.m))
	}
}
