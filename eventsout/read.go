package eventsout

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"

	"github.com/penstock-mta/penstock/events"
)

// Event is one delivery log record as the outputs send it.
type Event struct {
	// ID is stable for the record across restarts and rotations: the key
	// of its file and its byte offset there. Receivers deduplicate on it.
	ID string
	// Type is the record's type ("Delivery", "Bounce", ...).
	Type string
	// JSON is the record's line (without the newline) with "event_id"
	// added as its first key.
	JSON []byte
	// rec is where the record's own line starts in JSON, after the
	// event_id ('{' included): what events.Decode reads.
	rec int
}

// readChunk is how much one read of a log file takes: a batch reads only
// as far as its last line (not the whole rest of the file), in chunks of
// this size, into a buffer that the outputs share through a pool; a line
// longer than a chunk grows the buffer.
const readChunk = 64 << 10

// readBufs holds readChunk-sized buffers: what readFile reads is copied
// into each Event, so the buffer is free once it returns.
var readBufs = sync.Pool{New: func() any { b := make([]byte, readChunk); return &b }}

// Read returns up to max events after c and the cursor past them. When c's
// file is gone (deleted by retention) it starts at the oldest file left and
// reports skipped. Lines that are not JSON objects are passed over (bad
// counts them): one damaged line must not stop an output for ever.
func (t *Tail) Read(c Cursor, max int) (evs []Event, next Cursor, skipped bool, bad int, err error) {
	fs := t.snapshot()
	if len(fs) == 0 {
		return nil, c, false, 0, nil
	}
	i := 0
	if c.File != "" {
		i = -1
		for j, f := range fs {
			if f.key == c.File {
				i = j
				break
			}
		}
		if i < 0 {
			// Return at once so that the caller stores the new cursor
			// before reading on: the skip is reported once.
			return nil, Cursor{File: fs[0].key}, true, 0, nil
		}
	} else {
		c = Cursor{File: fs[0].key}
	}
	for {
		f := fs[i]
		if c.Offset < f.scanned {
			evs, c, bad, err = readFile(f, c, max)
			return evs, c, skipped, bad, err
		}
		if i+1 >= len(fs) {
			return nil, c, skipped, 0, nil
		}
		i++
		c = Cursor{File: fs[i].key}
	}
}

func readFile(f logFile, c Cursor, max int) ([]Event, Cursor, int, error) {
	fh, err := os.Open(f.path)
	if err != nil {
		return nil, c, 0, fmt.Errorf("delivery log: %w", err)
	}
	defer fh.Close()
	// The path may name another file by now (rotation renamed ours): read
	// only the file the Tail counted, or nothing until the next refresh.
	if fi, err := fh.Stat(); err != nil || !os.SameFile(fi, f.info) {
		return nil, c, 0, nil
	}
	bp := readBufs.Get().(*[]byte)
	buf := *bp
	defer func() {
		if len(buf) <= 1<<20 { // a buffer grown for a huge line is let go
			*bp = buf
			readBufs.Put(bp)
		}
	}()
	start, end := 0, 0 // buf[start:end] is read and not yet taken
	next := c.Offset   // the file offset of buf[end]
	var evs []Event
	bad := 0
	for len(evs) < max {
		nl := bytes.IndexByte(buf[start:end], '\n')
		if nl < 0 {
			left := f.scanned - next
			if left <= 0 {
				break
			}
			// Read on behind the partial line, moved to the front; a
			// line as long as the buffer doubles it.
			end = copy(buf, buf[start:end])
			start = 0
			if end == len(buf) {
				buf = append(buf, make([]byte, len(buf))...)
			}
			n := int(min(int64(len(buf)-end), left))
			if k, err := fh.ReadAt(buf[end:end+n], next); k < n {
				return nil, c, 0, fmt.Errorf("delivery log: read %s: %w", f.path, err)
			}
			end += n
			next += int64(n)
			continue
		}
		line := buf[start : start+nl]
		id := f.key + "-" + strconv.FormatInt(c.Offset, 10)
		c.Offset += int64(nl + 1)
		c.Line++
		start += nl + 1
		ev, ok := makeEvent(id, line)
		if !ok {
			bad++
			continue
		}
		evs = append(evs, ev)
	}
	return evs, c, bad, nil
}

const typePrefix = `{"type":"`

// recordType finds a line's type without decoding it: the events package's
// encoder writes "type" first, and a record never holds an unescaped
// {"type":" elsewhere, so a second one means two records torn into one
// line (a failed write) and the full decode decides.
func recordType(line []byte) (string, bool) {
	if !bytes.HasPrefix(line, []byte(typePrefix)) || line[len(line)-1] != '}' ||
		bytes.Contains(line[1:], []byte(typePrefix)) {
		return "", false
	}
	rest := line[len(typePrefix):]
	end := bytes.IndexByte(rest, '"')
	if end <= 0 {
		return "", false
	}
	for _, c := range rest[:end] {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return "", false
		}
	}
	return string(rest[:end]), true
}

func makeEvent(id string, line []byte) (Event, bool) {
	line = bytes.TrimSpace(line)
	if len(line) < 2 || line[0] != '{' {
		return Event{}, false
	}
	var head struct {
		Type string `json:"type"`
	}
	if t, ok := recordType(line); ok {
		head.Type = t
	} else if json.Unmarshal(line, &head) != nil || head.Type == "" {
		return Event{}, false
	}
	js := make([]byte, 0, len(line)+len(id)+16)
	js = append(js, `{"event_id":"`...)
	js = append(js, id...)
	js = append(js, '"')
	if rest := bytes.TrimSpace(line[1:]); len(rest) > 0 && rest[0] != '}' {
		js = append(js, ',')
	}
	rec := len(js) - 1 // the record's fields follow; a '{' is put back by record
	js = append(js, line[1:]...)
	return Event{ID: id, Type: head.Type, JSON: js, rec: rec}, true
}

// record decodes the event's delivery-log record.
func (e Event) record(r *events.Record) error {
	if e.rec <= 0 || e.rec >= len(e.JSON) {
		*r = events.Record{}
		return json.Unmarshal(e.JSON, r) // an Event not made by makeEvent
	}
	line := make([]byte, 0, len(e.JSON)-e.rec+1)
	line = append(append(line, '{'), e.JSON[e.rec+1:]...)
	return events.Decode(line, r)
}
