package smtp

import (
	"bytes"
	"errors"
	"io"
)

var ErrTooLongLine = errors.New("smtp: too long a line in input stream")

// lineLimitReader reads from the underlying Reader but restricts
// line length of lines in input stream to a certain length.
//
// It counts the bytes of each line as they come from R; a '\n' starts a new
// line and counts as its first byte. LineLimit 0 turns the count off, for
// the octets of a BDAT chunk, which are not lines.
//
// Below a bufio.Reader, one read from R may hold more than the line being
// read: the commands pipelined before and after it, or a BDAT chunk that
// its command, once parsed, will have read with the limit off. So a read
// that finds a line over the limit returns the bytes before that line and
// holds back the rest, which the next Read serves first. Only a Read that
// finds the long line with the limit still on returns ErrTooLongLine, and
// every Read after it does while the limit stays on. The whole line is held
// back, not just its excess: bufio.Reader.ReadLine (and so textproto) would
// return a line cut at the error as a line, and drop the error.
type lineLimitReader struct {
	R         io.Reader
	LineLimit int

	curLineLength int
	pending       []byte // held back from a read from R, served first
	good          int    // pending's first bytes, counted within the limit; a line over it follows them
	held          []byte // pending's buffer, kept for the next time
}

// lift turns the limit off, for a BDAT chunk.
func (r *lineLimitReader) lift() {
	r.LineLimit = 0
}

// restore turns the limit back on after a BDAT chunk: the next byte read
// starts a command line, and held-back bytes are counted again from there.
// Bytes the bufio.Reader above already holds past the chunk were counted
// with the chunk (or not at all, read with the limit off), not as a line of
// their own: a line after a chunk may pass the limit by at most that many.
func (r *lineLimitReader) restore(limit int) {
	r.LineLimit = limit
	r.curLineLength = 0
	if limit > 0 && len(r.pending) > 0 {
		r.good = r.count(r.pending)
	}
}

func (r *lineLimitReader) Read(b []byte) (int, error) {
	if len(r.pending) > 0 {
		return r.readPending(b)
	}

	n, err := r.R.Read(b)
	if err != nil || r.LineLimit <= 0 {
		return n, err
	}
	if i := r.count(b[:n]); i < n {
		r.held = append(r.held[:0], b[i:n]...)
		r.pending, r.good = r.held, 0
		if i == 0 {
			return 0, ErrTooLongLine
		}
		return i, nil
	}
	return n, nil
}

// readPending serves held-back bytes: with the limit on, those before the
// line over it.
func (r *lineLimitReader) readPending(b []byte) (int, error) {
	p := r.pending
	if r.LineLimit > 0 {
		if r.good == 0 && len(b) > 0 {
			return 0, ErrTooLongLine
		}
		p = p[:r.good]
	}
	n := copy(b, p)
	r.pending = r.pending[n:]
	if r.good -= n; r.good < 0 {
		r.good = 0 // served with the limit off
	}
	return n, nil
}

// count advances the line count over p, line by line, and returns len(p);
// or, at a line over the limit, the offset in p where that line starts (0
// if it started before p), with the count as it was there.
func (r *lineLimitReader) count(p []byte) int {
	// Each turn starts a line, or goes on with the one before p.
	for rest := p; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			i = len(rest)
		}
		if r.curLineLength+i > r.LineLimit {
			return len(p) - len(rest)
		}
		if i == len(rest) {
			r.curLineLength += i
			break
		}
		r.curLineLength = 1 // the '\n' is the next line's first byte
		rest = rest[i+1:]
	}
	return len(p)
}
