package events

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Options tune a Log. The zero value is ready to use.
type Options struct {
	// FlushInterval is how often buffered records reach the file. Zero means
	// 200ms. Records written since the last flush are lost on kill -9: the
	// delivery log is an audit trail, the spool is the source of truth.
	FlushInterval time.Duration
	// Now is the clock; nil means time.Now. Its location sets the rotation
	// midnight.
	Now func() time.Time

	afterFlush func() // test hook: called after each background flush
}

const (
	fileName = "delivery.log"
	// softCap wakes the flusher early; hardCap makes Write flush by itself,
	// bounding memory when the disk stalls.
	softCap = 256 << 10
	hardCap = 8 << 20
)

// Log is the delivery log. Its methods are safe for concurrent use.
type Log struct {
	dir        string
	now        func() time.Time
	loc        *time.Location
	afterFlush func()
	discard    bool
	pool       sync.Pool // *[]byte scratch buffers for encoding

	mu     sync.Mutex // guards the fields below
	buf    []byte     // encoded records not yet written
	cuts   []cut      // day boundaries inside buf, in order
	dayEnd time.Time  // a record at or after dayEnd starts a new day
	closed bool

	fmu     sync.Mutex // serialises flushes; guards the fields below
	f       *os.File
	fileDay time.Time // midnight of the day the open file holds
	size    int64     // bytes in the open file
	spare   []byte    // the previous buf, reused
	err     error     // last write error, reported by Close

	subMu      sync.RWMutex
	subs       map[*subscriber]struct{}
	subsClosed bool
	dropped    atomic.Uint64

	kick    chan struct{}
	done    chan struct{}
	stopped chan struct{}
}

// cut marks that buf[off:] belongs to day (a midnight) or later.
type cut struct {
	off int
	day time.Time
}

type subscriber struct{ ch chan *Record }

// Open opens (creating dir if needed) dir/delivery.log for appending and
// starts the background flusher. A delivery.log last written on an earlier
// day is first renamed to delivery-YYYYMMDD.log.
func Open(dir string, opts Options) (*Log, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("delivery log: create directory: %w", err)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	interval := opts.FlushInterval
	if interval <= 0 {
		interval = 200 * time.Millisecond
	}
	t := now()
	l := &Log{
		dir:        dir,
		now:        now,
		loc:        t.Location(),
		afterFlush: opts.afterFlush,
		subs:       make(map[*subscriber]struct{}),
		kick:       make(chan struct{}, 1),
		done:       make(chan struct{}),
		stopped:    make(chan struct{}),
	}
	l.fileDay = midnight(t)
	l.dayEnd = l.fileDay.AddDate(0, 0, 1)

	path := filepath.Join(dir, fileName)
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		if day := midnight(fi.ModTime().In(l.loc)); day.Before(l.fileDay) {
			if err := l.archive(day); err != nil {
				return nil, err
			}
		}
	}
	if err := l.openFile(); err != nil {
		return nil, err
	}
	go l.run(interval)
	return l, nil
}

// Discard returns a Log that writes no file. Subscribers still get records,
// so tests of other packages can watch what would be logged.
func Discard() *Log {
	return &Log{discard: true, now: time.Now, subs: make(map[*subscriber]struct{})}
}

// Write logs r. It fills r.Time with the clock if it is zero. It does no file
// I/O in the common case and never waits for a subscriber.
func (l *Log) Write(r *Record) {
	now := l.now()
	if r.Time.IsZero() {
		r.Time = now
	}
	l.publish(r)
	if l.discard {
		return
	}
	p, _ := l.pool.Get().(*[]byte)
	if p == nil {
		p = new([]byte)
	}
	enc := appendRecord((*p)[:0], r)

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		l.putScratch(p, enc)
		return
	}
	// The day is the Log's clock's, not the record's: a caller's odd
	// timestamp must not hold rotation back for years.
	if !now.Before(l.dayEnd) {
		day := midnight(now.In(l.loc))
		l.cuts = append(l.cuts, cut{off: len(l.buf), day: day})
		l.dayEnd = day.AddDate(0, 0, 1)
	}
	l.buf = append(l.buf, enc...)
	n := len(l.buf)
	l.mu.Unlock()
	l.putScratch(p, enc)

	switch {
	case n >= hardCap:
		l.Flush() // the disk is behind: make the writer wait for it
	case n >= softCap:
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
}

func (l *Log) putScratch(p *[]byte, b []byte) {
	if cap(b) <= 64<<10 { // don't keep a huge record's buffer around
		*p = b[:0]
		l.pool.Put(p)
	}
}

// Subscribe returns a channel that receives a copy of every record written
// from now on, and a function that ends the subscription and closes the
// channel. When the channel's buffer (buf records) is full, records for this
// subscriber are dropped and counted in Dropped. Close ends every
// subscription.
//
// The copy is shared by all subscribers: they must treat it as read-only.
func (l *Log) Subscribe(buf int) (<-chan *Record, func()) {
	if buf < 0 {
		buf = 0
	}
	s := &subscriber{ch: make(chan *Record, buf)}
	l.subMu.Lock()
	if l.subsClosed {
		close(s.ch)
		l.subMu.Unlock()
		return s.ch, func() {}
	}
	l.subs[s] = struct{}{}
	l.subMu.Unlock()
	cancel := func() {
		l.subMu.Lock()
		if _, ok := l.subs[s]; ok {
			delete(l.subs, s)
			close(s.ch)
		}
		l.subMu.Unlock()
	}
	return s.ch, cancel
}

// Dropped is the number of records that subscribers lost because their
// channel was full.
func (l *Log) Dropped() uint64 { return l.dropped.Load() }

// publish hands subscribers one shared copy of r. Sending a pointer, not
// the record, keeps a channel's buffer small enough to stay in cache: an
// 8,192-record buffer of values (360 bytes each) is 2.9 MB, cycled through by every send and
// scanned by the garbage collector, and the copies in and out of it were
// ~5% of the relay's CPU with four subscribers.
func (l *Log) publish(r *Record) {
	l.subMu.RLock()
	defer l.subMu.RUnlock()
	if len(l.subs) == 0 {
		return
	}
	cp := new(Record)
	*cp = *r
	for s := range l.subs {
		select {
		case s.ch <- cp:
		default:
			l.dropped.Add(1)
		}
	}
}

// Flush writes buffered records to the file (not fsynced) and returns the
// error of that write, if any.
func (l *Log) Flush() error {
	if l.discard {
		return nil
	}
	l.fmu.Lock()
	defer l.fmu.Unlock()
	return l.flushLocked()
}

// Close flushes, fsyncs and closes the file, stops the flusher and closes
// every subscriber's channel. Records written after Close are dropped. It
// returns the last write error the Log met, if any.
func (l *Log) Close() error {
	defer l.closeSubs()
	if l.discard {
		return nil
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.done)
	<-l.stopped

	l.fmu.Lock()
	defer l.fmu.Unlock()
	l.flushLocked()
	if l.f != nil {
		if err := l.f.Sync(); err != nil {
			l.err = fmt.Errorf("delivery log: sync: %w", err)
		}
		if err := l.f.Close(); err != nil && l.err == nil {
			l.err = fmt.Errorf("delivery log: close: %w", err)
		}
		l.f = nil
	}
	return l.err
}

func (l *Log) closeSubs() {
	l.subMu.Lock()
	for s := range l.subs {
		close(s.ch)
	}
	clear(l.subs)
	l.subsClosed = true
	l.subMu.Unlock()
}

func (l *Log) run(interval time.Duration) {
	defer close(l.stopped)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
		case <-l.kick:
		}
		l.Flush() // an error is kept in l.err for Close
		if l.afterFlush != nil {
			l.afterFlush()
		}
	}
}

// flushLocked writes out the buffer; l.fmu is held. Bytes that fail to write
// are dropped (keeping them would grow memory without bound on a dead disk).
func (l *Log) flushLocked() error {
	l.mu.Lock()
	buf, cuts := l.buf, l.cuts
	if len(buf) == 0 && len(cuts) == 0 {
		l.mu.Unlock()
		return nil
	}
	l.buf, l.cuts = l.spare[:0], nil
	l.mu.Unlock()

	var errs []error
	off := 0
	for _, c := range cuts {
		errs = append(errs, l.writeFile(buf[off:c.off]))
		off = c.off
		if c.day.After(l.fileDay) {
			errs = append(errs, l.rotate(c.day))
		}
	}
	errs = append(errs, l.writeFile(buf[off:]))
	if cap(buf) <= 2*hardCap {
		l.spare = buf[:0]
	} else {
		l.spare = nil
	}
	err := errors.Join(errs...)
	if err != nil {
		l.err = err
	}
	return err
}

func (l *Log) writeFile(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if l.f == nil { // a failed rotation left no file open: try again
		if err := l.openFile(); err != nil {
			return err
		}
	}
	n, err := l.f.Write(b)
	l.size += int64(n)
	if err != nil {
		return fmt.Errorf("delivery log: write %s: %w", l.f.Name(), err)
	}
	return nil
}

// rotate moves the current file aside under the name of the day it holds and
// opens a fresh one for day.
func (l *Log) rotate(day time.Time) error {
	var err error
	if l.size > 0 {
		if l.f != nil {
			l.f.Close()
			l.f = nil
		}
		err = l.archive(l.fileDay)
	}
	l.fileDay = day
	if l.f == nil {
		if oerr := l.openFile(); oerr != nil {
			return errors.Join(err, oerr)
		}
	}
	return err
}

// archive renames delivery.log to delivery-YYYYMMDD.log for day, adding .1,
// .2, ... if that name is taken (a clock that went back, a restart).
func (l *Log) archive(day time.Time) error {
	from := filepath.Join(l.dir, fileName)
	base := "delivery-" + day.Format("20060102")
	for i := 0; i < 100; i++ {
		name := base + ".log"
		if i > 0 {
			name = fmt.Sprintf("%s.%d.log", base, i)
		}
		to := filepath.Join(l.dir, name)
		if _, err := os.Lstat(to); err == nil {
			continue
		}
		if err := os.Rename(from, to); err != nil {
			return fmt.Errorf("delivery log: rotate: %w", err)
		}
		return nil
	}
	return fmt.Errorf("delivery log: rotate: too many files named %s.*.log in %s", base, l.dir)
}

func (l *Log) openFile() error {
	path := filepath.Join(l.dir, fileName)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("delivery log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("delivery log: %w", err)
	}
	l.f, l.size = f, fi.Size()
	return nil
}

func midnight(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, t.Location())
}
