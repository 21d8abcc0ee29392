package eventsout

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Cursor is a position in the delivery log: the byte Offset and Line number
// just past the last record an output has delivered, in the file whose key
// is File. The zero Cursor is the start of the oldest file.
type Cursor struct {
	File   string `json:"file"`
	Offset int64  `json:"offset"`
	Line   int64  `json:"line"`
}

// logFile is one delivery log file as the Tail last saw it.
type logFile struct {
	path    string
	info    os.FileInfo
	key     string // "" while the file is empty
	scanned int64  // bytes counted
	lines   int64  // complete lines in the first scanned bytes
}

// Tail watches a delivery log directory. Its methods are safe for
// concurrent use.
type Tail struct {
	dir string

	mu    sync.Mutex
	files []*logFile // oldest first
	wake  chan struct{}
}

// NewTail returns a Tail over the delivery log in dir.
func NewTail(dir string) *Tail {
	return &Tail{dir: dir, wake: make(chan struct{})}
}

// Wait returns a channel closed at the next Refresh that finds more data.
func (t *Tail) Wait() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.wake
}

// Run refreshes the Tail every interval until stop is closed.
func (t *Tail) Run(interval time.Duration, stop <-chan struct{}) {
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for {
		t.Refresh()
		select {
		case <-stop:
			return
		case <-tk.C:
		}
	}
}

// logOrder sorts the log's file names oldest first: dated archives by day
// then by their .N suffix, delivery.log last.
func logOrder(name string) (day string, n int, ok bool) {
	if name == "delivery.log" {
		return "99999999", 1 << 30, true
	}
	if !strings.HasPrefix(name, "delivery-") || !strings.HasSuffix(name, ".log") {
		return "", 0, false
	}
	s := strings.TrimSuffix(strings.TrimPrefix(name, "delivery-"), ".log")
	day, suf, _ := strings.Cut(s, ".")
	if len(day) != 8 {
		return "", 0, false
	}
	if suf != "" {
		v, err := strconv.Atoi(suf)
		if err != nil {
			return "", 0, false
		}
		n = v
	}
	return day, n, true
}

// Refresh lists the log's files and counts the lines written since the last
// call; it wakes waiters if anything grew.
func (t *Tail) Refresh() {
	t.mu.Lock()
	old := t.files
	t.mu.Unlock()
	files, grew := t.list(old)
	// A file seen before and missing now was either deleted or renamed by
	// a rotation between our directory read and our stat of
	// delivery.log. In the second case a second look finds it under its
	// dated name: only a file missing twice is gone.
	if missing(old, files) {
		files, grew = t.list(old)
	}
	t.mu.Lock()
	t.files = files
	if grew || len(files) != len(old) {
		close(t.wake)
		t.wake = make(chan struct{})
	}
	t.mu.Unlock()
}

func missing(old, files []*logFile) bool {
	for _, o := range old {
		found := false
		for _, f := range files {
			if f.key == o.key {
				found = true
				break
			}
		}
		if !found {
			return true
		}
	}
	return false
}

// list reads the directory; old are the files as last seen.
func (t *Tail) list(old []*logFile) (files []*logFile, grew bool) {
	ents, _ := os.ReadDir(t.dir)
	type named struct {
		name, day string
		n         int
	}
	var names []named
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		if day, n, ok := logOrder(e.Name()); ok {
			names = append(names, named{e.Name(), day, n})
		}
	}
	sort.Slice(names, func(i, j int) bool {
		if names[i].day != names[j].day {
			return names[i].day < names[j].day
		}
		return names[i].n < names[j].n
	})
	files = make([]*logFile, 0, len(names))
	for _, nm := range names {
		path := filepath.Join(t.dir, nm.name)
		// Everything about a file goes through one descriptor: a rotation
		// may rename the path to another file at any moment.
		fh, err := os.Open(path)
		if err != nil {
			continue
		}
		fi, err := fh.Stat()
		if err != nil {
			fh.Close()
			continue
		}
		var f *logFile
		for _, o := range old {
			if os.SameFile(o.info, fi) { // renamed by rotation: same file
				c := *o
				f = &c
				break
			}
		}
		if f == nil {
			f = &logFile{}
			grew = true
		}
		f.path, f.info = path, fi
		if f.key == "" {
			f.key = fileKey(fh)
		}
		if fi.Size() > f.scanned {
			n, scanned := countLines(fh, f.scanned)
			if scanned > f.scanned {
				f.lines += n
				f.scanned = scanned
				grew = true
			}
		}
		fh.Close()
		if f.key != "" {
			files = append(files, f)
		}
	}
	return files, grew
}

// fileKey names a file by the hash of its first complete line, which
// rotation does not change; "" if it has none yet.
func fileKey(f *os.File) string {
	line, err := bufio.NewReaderSize(io.NewSectionReader(f, 0, 1<<62), 4096).ReadSlice('\n')
	if err != nil && err != bufio.ErrBufferFull {
		return ""
	}
	sum := sha256.Sum256(line)
	return hex.EncodeToString(sum[:6])
}

// countLines counts the complete lines in f from byte off, returning the
// count and the offset just past the last one.
func countLines(f *os.File, off int64) (int64, int64) {
	buf := make([]byte, 256<<10)
	var n int64
	end := off
	pos := off
	for {
		k, err := f.ReadAt(buf, pos)
		if k > 0 {
			b := buf[:k]
			for {
				i := bytes.IndexByte(b, '\n')
				if i < 0 {
					break
				}
				n++
				end = pos + int64(i+1)
				b = b[i+1:]
				pos = end
			}
			pos += int64(len(b))
		}
		if err != nil {
			return n, end
		}
	}
}

// snapshot returns the files as last seen.
func (t *Tail) snapshot() []logFile {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]logFile, len(t.files))
	for i, f := range t.files {
		out[i] = *f
	}
	return out
}

// End is the cursor at the end of the log as last seen.
func (t *Tail) End() Cursor {
	fs := t.snapshot()
	if len(fs) == 0 {
		return Cursor{}
	}
	f := fs[len(fs)-1]
	return Cursor{File: f.key, Offset: f.scanned, Line: f.lines}
}

// Lag is the number of records after c; found is false when c's file is no
// longer in the log.
func (t *Tail) Lag(c Cursor) (lag int64, found bool) {
	fs := t.snapshot()
	if c.File == "" {
		for _, f := range fs {
			lag += f.lines
		}
		return lag, true
	}
	for _, f := range fs {
		switch {
		case found:
			lag += f.lines
		case f.key == c.File:
			found = true
			if f.lines > c.Line {
				lag += f.lines - c.Line
			}
		}
	}
	if !found { // deleted under the cursor: all that is left is behind
		lag = 0
		for _, f := range fs {
			lag += f.lines
		}
	}
	return lag, found
}
