package sim

import (
	"bufio"
	"errors"
	"net"
	"sort"
	"time"
)

// A Provider's connections: accepting, admission, and the counters that
// tests assert on.

func (p *Provider) acceptLoop(ln net.Listener) {
	defer p.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors or similar: wait a little rather than spin.
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-p.done:
				t.Stop()
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		p.mu.Lock()
		if p.closed || p.refusing {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serveConn(c)
	}
}

func (p *Provider) serveConn(c net.Conn) {
	defer p.wg.Done()
	if !p.takeSlot() {
		p.drop(c)
		return
	}
	defer p.giveSlot()
	s := &session{
		p:   p,
		raw: c,
		ip:  hostOf(c.RemoteAddr()),
		r:   bufio.NewReaderSize(deadlineConn{c}, readBufSize),
		w:   bufio.NewWriterSize(deadlineConn{c}, writeBufSize),
	}
	s.path = s.ip + ">" + hostOf(c.LocalAddr())
	p.connOpened(s)
	s.serve()
	// Counts drop before the socket closes, so a client that saw EOF sees them.
	p.connClosed(s)
	p.drop(c)
}

// drop closes an accepted connection and forgets it.
func (p *Provider) drop(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func hostOf(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	h, _, _ := net.SplitHostPort(a.String())
	return h
}

// deadlineConn gives every read and write the idle timeout.
type deadlineConn struct{ net.Conn }

func (c deadlineConn) Read(b []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(idleTimeout))
	return c.Conn.Read(b)
}

func (c deadlineConn) Write(b []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(idleTimeout))
	return c.Conn.Write(b)
}

// --- counters (all under smu) ---

func (p *Provider) connOpened(s *session) {
	p.smu.Lock()
	defer p.smu.Unlock()
	st := &p.st
	st.Connections++
	if len(st.ConnTimes) < maxTimes {
		st.ConnTimes = append(st.ConnTimes, time.Now())
	}
	st.OpenNow++
	st.MaxOpen = max(st.MaxOpen, st.OpenNow)
	p.openBySource[s.ip]++
	st.MaxOpenBySource[s.ip] = max(st.MaxOpenBySource[s.ip], p.openBySource[s.ip])
	p.openByPath[s.path]++
	st.MaxOpenByPath[s.path] = max(st.MaxOpenByPath[s.path], p.openByPath[s.path])
}

func (p *Provider) connClosed(s *session) {
	p.smu.Lock()
	defer p.smu.Unlock()
	p.st.OpenNow--
	decr(p.openBySource, s.ip)
	decr(p.openByPath, s.path)
	if s.admitted {
		decr(p.admitted, s.ip)
	}
}

func decr(m map[string]int, k string) {
	if m[k] <= 1 {
		delete(m, k)
	} else {
		m[k]--
	}
}

// takeSlot waits for one of MaxSessions' slots (at once when it is unset);
// false when the provider closed meanwhile.
func (p *Provider) takeSlot() bool {
	counted := false
	for {
		p.smu.Lock()
		if limit := p.beh.Load().MaxSessions; limit <= 0 || p.serving < limit {
			p.serving++
			p.smu.Unlock()
			return true
		}
		if !counted {
			p.st.Waited++
			counted = true
		}
		if p.slotFree == nil {
			p.slotFree = make(chan struct{})
		}
		ch := p.slotFree
		p.smu.Unlock()
		select {
		case <-ch:
		case <-p.done:
			return false
		}
	}
}

// giveSlot frees a slot and wakes the connections waiting for one.
func (p *Provider) giveSlot() {
	p.smu.Lock()
	p.serving--
	if p.slotFree != nil {
		close(p.slotFree)
		p.slotFree = nil
	}
	p.smu.Unlock()
}

// admit applies MaxConnsPerIP; refused connections never count as admitted.
func (p *Provider) admit(s *session, limit int) bool {
	p.smu.Lock()
	defer p.smu.Unlock()
	if limit > 0 && p.admitted[s.ip] >= limit {
		p.st.RejectedConns++
		return false
	}
	p.admitted[s.ip]++
	s.admitted = true
	return true
}

func (p *Provider) countRejectedConn() {
	p.smu.Lock()
	p.st.RejectedConns++
	p.smu.Unlock()
}

func (p *Provider) countAttempt() {
	t := time.Now()
	p.smu.Lock()
	p.st.Attempts++
	if len(p.st.AttemptTimes) < maxTimes {
		p.st.AttemptTimes = append(p.st.AttemptTimes, t)
	}
	p.smu.Unlock()
}

func (p *Provider) countRcptReject(code int) {
	p.smu.Lock()
	p.st.RcptRejected[code]++
	p.smu.Unlock()
}

func (p *Provider) countDataReject(code int) {
	p.smu.Lock()
	p.st.DataRejected[code]++
	p.smu.Unlock()
}

func (p *Provider) countTLS(resumed bool) {
	p.smu.Lock()
	p.st.TLSConns++
	if resumed {
		p.st.TLSResumed++
	}
	p.smu.Unlock()
}

// recentLocked drops deliveries older than rateWindow and returns how many remain.
func (p *Provider) recentLocked(now int64) int {
	cut := now - int64(rateWindow)
	for p.recentHead < len(p.recent) && p.recent[p.recentHead] <= cut {
		p.recentHead++
	}
	if p.recentHead > 4096 && 2*p.recentHead > len(p.recent) {
		n := copy(p.recent, p.recent[p.recentHead:])
		p.recent = p.recent[:n]
		p.recentHead = 0
	}
	return len(p.recent) - p.recentHead
}

func (p *Provider) throttled(b *behavior) bool {
	if b.RateLimit <= 0 {
		return false
	}
	now := int64(time.Since(p.start))
	p.smu.Lock()
	n := p.recentLocked(now)
	if w := b.RateWindow; w > 0 && w < rateWindow {
		recent := p.recent[p.recentHead:]
		cut := now - int64(w)
		n = len(recent) - sort.Search(len(recent), func(i int) bool { return recent[i] > cut })
	}
	p.smu.Unlock()
	return n >= b.RateLimit
}

// accept records a delivered message and returns its ordinal (1-based).
func (p *Provider) accept(s *session) int64 {
	t := time.Now()
	now := int64(t.Sub(p.start))
	p.smu.Lock()
	defer p.smu.Unlock()
	st := &p.st
	st.Delivered++
	if s.chunking {
		st.Chunked++
	}
	st.DeliveredBy[s.ip]++
	p.delivered.Store(st.Delivered)
	st.Recipients += int64(len(s.rcpts))
	if len(st.Arrivals) < maxTimes {
		st.Arrivals = append(st.Arrivals, t)
		st.ArrivalsBySource[s.ip] = append(st.ArrivalsBySource[s.ip], t)
	}
	for _, r := range s.rcpts {
		if n, ok := st.RcptSeen[r]; ok || len(st.RcptSeen) < maxTimes {
			st.RcptSeen[r] = n + 1
		}
	}
	s.msgs++
	st.MaxMsgsPerConn = max(st.MaxMsgsPerConn, s.msgs)
	p.recent = append(p.recent, now)
	p.recentLocked(now)
	if len(p.waiters) > 0 {
		kept := p.waiters[:0]
		for _, w := range p.waiters {
			if st.Delivered >= w.n {
				close(w.ch)
			} else {
				kept = append(kept, w)
			}
		}
		clear(p.waiters[len(kept):])
		p.waiters = kept
	}
	return st.Delivered
}
