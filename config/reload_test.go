package config

import (
	"slices"
	"testing"
)

func TestRestartNeeded(t *testing.T) {
	a, b := Default(), Default()
	if got := RestartNeeded(a, b); len(got) != 0 {
		t.Fatalf("same config: %v", got)
	}
	b.DNS.Nameservers = []string{"127.0.0.1:5353"}
	b.SMTP.Listen = "127.0.0.1:2626"
	b.Delivery.Port = 2525 // live
	b.MXRules = append(b.MXRules, MXRule{Name: "x"})
	b.Server.Hostname = "other.example" // live
	b.Server.SpoolDir = "/elsewhere"
	got := RestartNeeded(a, b)
	if want := []string{"dns.nameservers", "server.spool_dir", "smtp.listen"}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if RestartMessage(got) == "" || RestartMessage(nil) != "" {
		t.Fatal("message")
	}
}
