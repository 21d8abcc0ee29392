package queue

import (
	"math/rand/v2"
	"strconv"
	"testing"
	"time"
	"unique"

	"github.com/penstock-mta/penstock/dns"
	"github.com/penstock-mta/penstock/sim"
	"github.com/penstock-mta/penstock/spool"
)

// walkTotals counts the queued recipients and the places holding any by
// walking every job: what Totals computed before it kept a tally, the
// reference the tally must equal.
func walkTotals(q *Queue) (queued, places int, perSite map[*site]int) {
	perSite = map[*site]int{}
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, d := range q.domains {
		if n := rcptsOf(d.pending); n > 0 {
			queued += n
			places++
		}
	}
	for _, s := range q.sites {
		s.mu.Lock()
		n := rcptsOf(s.jobs)
		for j := range s.claimed {
			n += len(j.rcpts)
		}
		s.mu.Unlock()
		perSite[s] = n
		if n > 0 {
			queued += n
			places++
		}
	}
	return queued, places, perSite
}

// After a random sequence of everything that adds, claims, narrows,
// returns, refuses, expires, purges and cancels jobs, at sites and at
// domains waiting for their MX answer, Totals equals a walk of every job.
func TestTotalsTallyMatchesWalk(t *testing.T) {
	f := newFixture(t, sim.Behavior{})
	q := f.q
	rng := rand.New(rand.NewPCG(20, 1))
	now := time.Now()

	var sites []*site
	for i := range 4 {
		key := "mx.s" + strconv.Itoa(i) + ".test"
		s := newSite(q, key, []dns.MX{{Host: key, Pref: 10}})
		s.running = true // the test plays the runner
		q.mu.Lock()
		q.sites[key] = s
		q.mu.Unlock()
		sites = append(sites, s)
	}
	// Two domains whose MX answer is pending: route holds their jobs.
	held := []string{"wait1.test", "wait2.test"}
	q.mu.Lock()
	for _, d := range held {
		q.domains[d] = &domainState{name: unique.Make(d), resolving: true}
	}
	q.mu.Unlock()

	id := 0
	newJob := func(domain string) *job {
		id++
		m := &spool.Message{ID: spool.ID(id), Sender: "s@example.org", Received: now, Expires: now.Add(time.Hour),
			DeliveryID: "c" + strconv.Itoa(rng.IntN(3))}
		if rng.IntN(5) == 0 {
			m.Expires = now.Add(time.Minute) // expired by the ExpireHeld steps
		}
		j := &job{e: entryOf(m), domain: unique.Make(domain), index: -1, due: dueOf(now.Add(-time.Second))}
		for k := range 1 + rng.IntN(3) {
			m.Recipients = append(m.Recipients, spool.Recipient{Addr: "r" + strconv.Itoa(k) + "@" + domain})
			j.rcpts = append(j.rcpts, k)
			j.e.pending++
		}
		return j
	}
	type claimedJob struct {
		j *job
		s *site
	}
	var claimed []claimedJob

	check := func(step int) {
		t.Helper()
		wantQ, wantP, perSite := walkTotals(q)
		got := q.Totals()
		if got.Queued != wantQ || got.Sites != wantP {
			t.Fatalf("step %d: Totals queued %d sites %d; a walk of every job: queued %d sites %d", step, got.Queued, got.Sites, wantQ, wantP)
		}
		for s, n := range perSite {
			s.mu.Lock()
			qr := s.queuedRecipients()
			s.mu.Unlock()
			if qr != n {
				t.Fatalf("step %d: site %s counts %d recipients; a walk: %d", step, s.key, qr, n)
			}
		}
	}

	ops := map[string]int{}
	for step := range 3000 {
		s := sites[rng.IntN(len(sites))]
		switch op := rng.IntN(10); op {
		case 0, 1, 2: // new mail at a site
			ops["push"]++
			s.push(newJob("d" + strconv.Itoa(rng.IntN(3)) + "." + s.key))
		case 3: // new mail for a domain waiting for its MX answer
			ops["route"]++
			q.route(newJob(held[rng.IntN(len(held))]))
		case 4: // a session claims a job
			if j, _ := s.claim(limits{}, s.key); j != nil {
				ops["claim"]++
				claimed = append(claimed, claimedJob{j, s})
			}
		case 5, 6: // a claimed job comes back: done, or some recipients still queued
			if len(claimed) == 0 {
				continue
			}
			i := rng.IntN(len(claimed))
			c := claimed[i]
			claimed = append(claimed[:i], claimed[i+1:]...)
			if keep := c.j.rcpts[:rng.IntN(len(c.j.rcpts)+1)]; len(keep) > 0 {
				ops["narrow"]++
				c.s.keepRcpts(c.j, append([]int(nil), keep...))
				c.s.release(c.j, true)
			} else {
				ops["release"]++
				c.s.release(c.j, false)
			}
		case 7: // a quota refuses a claimed job
			if len(claimed) == 0 {
				continue
			}
			ops["refuse"]++
			c := claimed[len(claimed)-1]
			claimed = claimed[:len(claimed)-1]
			c.s.refuse(c.j, Wait{Status: StatusHourlyQuota})
		case 8: // the operator purges a site or cancels a campaign
			if rng.IntN(2) == 0 {
				ops["purge"]++
				if _, err := q.Purge(s.key, "test"); err != nil {
					t.Fatal(err)
				}
			} else {
				ops["cancel"]++
				q.CancelDelivery("c"+strconv.Itoa(rng.IntN(3)), "test")
			}
		case 9: // validity ends for held jobs
			if rng.IntN(4) == 0 {
				ops["expire"]++
				q.ExpireHeld(now.Add(2 * time.Minute))
			}
		}
		check(step)
	}
	for _, c := range claimed {
		c.s.release(c.j, false)
	}
	check(-1)
	for _, op := range []string{"push", "route", "claim", "narrow", "release", "refuse", "purge", "cancel", "expire"} {
		if ops[op] == 0 {
			t.Errorf("the sequence never did %s", op)
		}
	}
}
