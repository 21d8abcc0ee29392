package queue

import (
	"context"
	"fmt"
	"time"

	"github.com/penstock-mta/penstock/caps"
	"github.com/penstock-mta/penstock/dns"
	"github.com/penstock-mta/penstock/quota"
)

// The [[cap]] checks: each one a quota of its own beside the rule's, asked
// at the same three points (the connection lease, the connection-open
// token, the message token) and reported as StatusCapMet with the cap's
// name and numbers.

func mxNames(hosts []dns.MX) []string {
	names := make([]string, len(hosts))
	for i, h := range hosts {
		names[i] = h.Host
	}
	return names
}

// capLease is a rule's connection lease together with the leases of the
// caps the connection counts against: released together, valid together.
type capLease struct {
	quota.Lease // the rule's: its Key names the session's rule scope
	caps        []quota.Lease
}

func (l *capLease) Release() {
	for _, c := range l.caps {
		c.Release()
	}
	l.Lease.Release()
}

// Valid is false when any of the leases lost its validity (a cluster lease
// Redis could not renew).
func (l *capLease) Valid() bool {
	for _, c := range append([]quota.Lease{l.Lease}, l.caps...) {
		if v, ok := c.(quota.Revocable); ok && !v.Valid() {
			return false
		}
	}
	return true
}

// takeCapConns takes a connection slot of every cap with max_connections
// on top of the rule's lease. On a refusal it releases what it took, the
// rule's lease included, and returns the refusing cap and its usage.
func (s *site) takeCapConns(ctx context.Context, rule quota.Lease, cs []*caps.Cap) (quota.Lease, quota.Usage, *caps.Cap, bool) {
	cl := &capLease{Lease: rule}
	for _, c := range cs {
		if c.MaxConnections <= 0 {
			continue
		}
		key := c.ConnKey()
		l, u, ok, err := s.q.deps.Quotas.TryConn(ctx, key, c.MaxConnections)
		if err != nil {
			s.q.deps.Logger.Warn("quota store", "key", key, "err", err)
			u = quota.Usage{Key: key, Kind: quota.KindConn, Limit: c.MaxConnections}
		}
		if !ok || err != nil {
			cl.Release()
			return nil, u, c, false
		}
		cl.caps = append(cl.caps, l)
	}
	if len(cl.caps) == 0 {
		return rule, quota.Usage{}, nil, true
	}
	return cl, quota.Usage{}, nil, true
}

// capWait records that a cap holds the site's mail. Caller does not hold s.mu.
func (s *site) capWait(c *caps.Cap, u quota.Usage, until time.Time, what string) {
	w := Wait{Status: StatusCapMet, Cap: c.Name, Key: u.Key, Limit: u.Limit, InUse: u.InUse, Until: until,
		Detail: fmt.Sprintf("cap %q (%s): %s (key %s)", c.Name, c.Limits(), what, u.Key)}
	s.mu.Lock()
	s.setWait(w)
	s.mu.Unlock()
}

// capConnsMet records a cap's max_connections met: it frees when one of
// the connections it counts ends, anywhere.
func (s *site) capConnsMet(c *caps.Cap, u quota.Usage) {
	s.capWait(c, u, time.Time{}, fmt.Sprintf("%d of %d connections in use; frees when one of them closes", u.InUse, u.Limit))
}

// takeCapOpens takes a connection-open token of every cap with a
// max_connection_rate, after the rule's.
func (s *site) takeCapOpens(cs []*caps.Cap) (time.Duration, bool) {
	for _, c := range cs {
		r := c.MaxConnectionRate
		if r.IsZero() {
			continue
		}
		key := c.OpenKey()
		ctx, cancel := context.WithTimeout(s.q.ctx, 10*time.Second)
		ok, retryIn, err := s.q.deps.Quotas.TakeRate(ctx, key, r)
		cancel()
		if err == nil && ok {
			continue
		}
		retryIn = s.q.storeRetry(key, retryIn, err)
		until := s.q.now().Add(retryIn)
		s.capWait(c, quota.Usage{Key: key, Limit: r.N, InUse: quota.RateBurst(r)}, until,
			fmt.Sprintf("max_connection_rate %d per %s, burst %d, met; next connection at %s (in %s)",
				r.N, r.Per, quota.RateBurst(r), until.UTC().Format(time.RFC3339), retryIn.Round(time.Millisecond)))
		return max(retryIn, time.Millisecond), false
	}
	return 0, true
}

// capRates reports whether any cap limits messages per hour.
func capRates(cs []*caps.Cap) bool {
	for _, c := range cs {
		if c.MessagesPerHour > 0 {
			return true
		}
	}
	return false
}

// takeCapMessages takes a message token of every cap with
// messages_per_hour for the claimed job j. Refused, it puts j back with
// the cap's wait and returns how long until the next token.
func (s *site) takeCapMessages(ctx context.Context, j *job, cs []*caps.Cap) (time.Duration, bool) {
	for _, c := range cs {
		if c.MessagesPerHour <= 0 {
			continue
		}
		key := c.RateKey()
		ok, retryIn, err := s.q.deps.Quotas.TakeMessage(ctx, key, c.MessagesPerHour)
		if err == nil && ok {
			continue
		}
		retryIn = s.q.storeRetry(key, retryIn, err)
		until := s.q.now().Add(retryIn)
		b := quota.Burst(c.MessagesPerHour)
		s.refuse(j, Wait{Status: StatusCapMet, Cap: c.Name, Key: key, Limit: c.MessagesPerHour, InUse: b, Until: until,
			Detail: fmt.Sprintf("cap %q (%s): %d messages per hour, burst %d, met; next message at %s (in %s) (key %s)",
				c.Name, c.Limits(), c.MessagesPerHour, b, until.UTC().Format(time.RFC3339), retryIn.Round(time.Millisecond), key)})
		return max(retryIn, time.Millisecond), false
	}
	return 0, true
}
