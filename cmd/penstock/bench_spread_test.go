package main

import (
	"slices"
	"strings"
	"testing"
)

// TestBenchSpreadZipf: the zipf load of 100,000 recipients over 10,000
// domains gives the top 10 about 70%, reaches every domain, and is the same
// on every run; uniform is round robin; an unknown load is refused.
func TestBenchSpreadZipf(t *testing.T) {
	a, err := benchSpread("zipf", 100_000, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	top10, used := spreadSummary(a, 10_000)
	if top10 < 0.68 || top10 > 0.72 {
		t.Errorf("top 10 domains take %.3f of the recipients, want about 0.70", top10)
	}
	if used != 10_000 {
		t.Errorf("%d domains get recipients, want all 10,000", used)
	}
	b, _ := benchSpread("zipf", 100_000, 10_000)
	if !slices.Equal(a, b) {
		t.Error("two zipf spreads of the same load differ")
	}
	// The big domains are spread over the run, not bunched at its start.
	if top, _ := spreadSummary(a[:10_000], 10_000); top < 0.6 {
		t.Errorf("the first 10%% of the run gives the top 10 only %.3f", top)
	}

	// Fewer recipients than domains: no floor, still the law's head.
	small, _ := benchSpread("zipf", 1000, 10_000)
	if top, _ := spreadSummary(small, 10_000); top < 0.6 || top > 0.8 {
		t.Errorf("1,000 over 10,000 domains: top 10 take %.3f, want about 0.70", top)
	}

	u, _ := benchSpread("uniform", 7, 3)
	if !slices.Equal(u, []int{0, 1, 2, 0, 1, 2, 0}) {
		t.Errorf("uniform: %v, want round robin", u)
	}
	if _, err := benchSpread("pareto", 10, 2); err == nil || !strings.Contains(err.Error(), "want uniform or zipf") {
		t.Errorf("-load pareto: %v", err)
	}
	if code, _, errs := runCmd("bench", "-load", "pareto"); code != 2 || !strings.Contains(errs, "want uniform or zipf") {
		t.Errorf("bench -load pareto: %d %s", code, errs)
	}
}
