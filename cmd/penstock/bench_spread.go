package main

// How the bench's recipients spread over its domains (-load).
//
// uniform: message i goes to domain i mod D (round robin).
//
// zipf: a campaign's shape. Every domain gets one recipient first (the
// long tail is real: each domain is a site to resolve and connect to),
// the rest are drawn from a Zipf law, P(rank k) ∝ k^-s, whose exponent s
// is solved by bisection so that the top 10 domains take benchZipfTop10
// of all recipients (70%: about what large senders see of Gmail, Yahoo,
// Outlook and the next few). The draws use a fixed seed and the result is
// shuffled with it, so a load is the same on every run and recipients of
// the big domains are spread over the whole run.

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
)

const (
	benchZipfTop10 = 0.70
	benchZipfSeed  = 20
)

// benchSpread returns the domain index of every message, 0..domains-1.
func benchSpread(load string, n, domains int) ([]int, error) {
	out := make([]int, n)
	switch load {
	case "uniform":
		for i := range out {
			out[i] = i % domains
		}
		return out, nil
	case "zipf":
	default:
		return nil, fmt.Errorf("-load %q: want uniform or zipf", load)
	}
	rng := rand.New(rand.NewPCG(benchZipfSeed, uint64(n)<<32|uint64(domains)))
	floor := 0
	if n >= domains {
		floor = domains
		for i := range floor {
			out[i] = i
		}
	}
	rest := n - floor
	// The share the top 10 must take of the drawn recipients for the whole
	// load to give them benchZipfTop10 (the floor gives them 10 of n).
	top := min(10, domains)
	want := 0.0
	if rest > 0 {
		want = (benchZipfTop10*float64(n) - float64(min(top, floor))) / float64(rest)
	}
	s := solveZipf(domains, top, want)
	cdf := make([]float64, domains)
	sum := 0.0
	for k := range domains {
		sum += math.Pow(float64(k+1), -s)
		cdf[k] = sum
	}
	for i := floor; i < n; i++ {
		u := rng.Float64() * sum
		out[i] = min(sort.SearchFloat64s(cdf, u), domains-1)
	}
	rng.Shuffle(n, func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out, nil
}

// solveZipf finds s in [0, 8] for which the top ranks of a Zipf law over
// domains take share of the mass (the share grows with s).
func solveZipf(domains, top int, share float64) float64 {
	topShare := func(s float64) float64 {
		head, all := 0.0, 0.0
		for k := range domains {
			w := math.Pow(float64(k+1), -s)
			if k < top {
				head += w
			}
			all += w
		}
		return head / all
	}
	lo, hi := 0.0, 8.0
	for range 50 {
		mid := (lo + hi) / 2
		if topShare(mid) < share {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}

// spreadSummary describes a spread for the results: the top 10 domains'
// share and how many domains get any recipient.
func spreadSummary(spread []int, domains int) (top10 float64, used int) {
	counts := make([]int, domains)
	for _, d := range spread {
		counts[d]++
	}
	for _, c := range counts {
		if c > 0 {
			used++
		}
	}
	slices.SortFunc(counts, func(a, b int) int { return b - a })
	head := 0
	for _, c := range counts[:min(10, domains)] {
		head += c
	}
	if len(spread) > 0 {
		top10 = float64(head) / float64(len(spread))
	}
	return top10, used
}
