package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Meta record layout, version 1. All integers are encoding/binary varints
// (uvarint unless noted); a string is a uvarint length and its bytes; a time is
// a signed varint of Unix nanoseconds, 0 for the zero time.
//
//	version  byte (metaVersion)
//	flags    byte
//	sender   string
//	received time
//	expires  time
//	delivery string
//	pool     string
//	tenant   string (version 2 only)
//	size     varint (signed)
//	nrcpt    uvarint
//	nrcpt ×  addr string, state byte, attempts, next time, code, enhanced string,
//	         text string, vars string (empty = nil)
//
// Version 2 adds the tenant and is written only for a message that has one,
// so the records of every other message are unchanged and a spool written
// by an older build reads as before.
//
// The ID is the record's key and is not repeated inside. Nothing is padded, so
// a queued campaign recipient costs its address, its variables and about ten
// bytes, plus the message header when each recipient is its own message.
const (
	metaVersion       = 1
	metaVersionTenant = 2
)

// minRecipientLen is the smallest encoding of one recipient (every field
// empty); it bounds nrcpt against the bytes left so malformed input cannot
// make the decoder allocate more than the record's size justifies.
const minRecipientLen = 8

var errMalformed = errors.New("malformed meta record")

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	return binary.AppendVarint(b, t.UnixNano())
}

// encodedSize is an upper bound of the encoding's length, so appendMeta
// allocates once.
func encodedSize(m *Message) int {
	n := 2 + 3*binary.MaxVarintLen64 + 4*binary.MaxVarintLen64 + len(m.Sender) + len(m.DeliveryID) + len(m.Pool) + binary.MaxVarintLen64 + len(m.Tenant)
	for i := range m.Recipients {
		r := &m.Recipients[i]
		n += 1 + 8*binary.MaxVarintLen64 + len(r.Addr) + len(r.LastEnhanced) + len(r.LastText) + len(r.Vars)
	}
	return n
}

// appendMeta appends the encoding of m to b. It refuses states the decoder
// would refuse, so what is written can always be read back.
func appendMeta(b []byte, m *Message) ([]byte, error) {
	v := byte(metaVersion)
	if m.Tenant != "" {
		v = metaVersionTenant
	}
	b = append(b, v, m.Flags)
	b = appendString(b, m.Sender)
	b = appendTime(b, m.Received)
	b = appendTime(b, m.Expires)
	b = appendString(b, m.DeliveryID)
	b = appendString(b, m.Pool)
	if v == metaVersionTenant {
		b = appendString(b, m.Tenant)
	}
	b = binary.AppendVarint(b, m.Size)
	b = binary.AppendUvarint(b, uint64(len(m.Recipients)))
	for i := range m.Recipients {
		r := &m.Recipients[i]
		if r.State >= numStates {
			return nil, fmt.Errorf("recipient %q: invalid state %d", r.Addr, r.State)
		}
		b = appendString(b, r.Addr)
		b = append(b, byte(r.State))
		b = binary.AppendUvarint(b, uint64(r.Attempts))
		b = appendTime(b, r.NextAttempt)
		b = binary.AppendUvarint(b, uint64(r.LastCode))
		b = appendString(b, r.LastEnhanced)
		b = appendString(b, r.LastText)
		b = binary.AppendUvarint(b, uint64(len(r.Vars)))
		b = append(b, r.Vars...)
	}
	return b, nil
}

// encodeMeta returns the encoding of m and its number of queued recipients.
func encodeMeta(m *Message) ([]byte, int64, error) {
	b, err := appendMeta(make([]byte, 0, encodedSize(m)), m)
	if err != nil {
		return nil, 0, err
	}
	return b, queuedOf(m), nil
}

func queuedOf(m *Message) int64 {
	var n int64
	for i := range m.Recipients {
		if !m.Recipients[i].State.Final() {
			n++
		}
	}
	return n
}

func allFinal(m *Message) bool {
	for i := range m.Recipients {
		if !m.Recipients[i].State.Final() {
			return false
		}
	}
	return true
}

// reader walks one record. The first error sticks; later reads return zero
// values, so callers check err once at the end of a section.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = errMalformed
	}
	r.b = nil
}

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) uint16() uint16 {
	v := r.uvarint()
	if v > 0xffff {
		r.fail()
		return 0
	}
	return uint16(v)
}

// bytes returns the next length-prefixed field, aliasing the record.
func (r *reader) bytes() []byte {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) time() time.Time {
	ns := r.varint()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// decoder turns records into Messages. It owns no record memory: every string
// and byte slice is copied, so records may live in the database's mmap. It
// keeps the last value of the fields that repeat across messages (sender,
// campaign, pool, last responses) and reuses that string instead of allocating
// a copy per message, which matters when Load brings back a million campaign
// recipients.
type decoder struct {
	sender, delivery, pool, tenant, enhanced, text string
}

// intern returns b as a string, reusing *last when it has the same contents.
func intern(last *string, b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if string(b) == *last { // the conversion in a comparison does not allocate
		return *last
	}
	*last = string(b)
	return *last
}

// decode parses rec into m, which it overwrites, reusing the array of its
// recipients when it is large enough (Scan). Malformed input, of any shape,
// returns an error and never panics.
func (d *decoder) decode(rec []byte, m *Message) error {
	r := reader{b: rec}
	v := r.byte()
	if r.err == nil && v != metaVersion && v != metaVersionTenant {
		return fmt.Errorf("meta record version %d, this build reads %d and %d", v, metaVersion, metaVersionTenant)
	}
	rs := m.Recipients[:0]
	*m = Message{}
	m.Flags = r.byte()
	m.Sender = intern(&d.sender, r.bytes())
	m.Received = r.time()
	m.Expires = r.time()
	m.DeliveryID = intern(&d.delivery, r.bytes())
	m.Pool = intern(&d.pool, r.bytes())
	if v == metaVersionTenant {
		m.Tenant = intern(&d.tenant, r.bytes())
	}
	m.Size = r.varint()
	n := r.uvarint()
	if r.err != nil {
		return r.err
	}
	if n > uint64(len(r.b)/minRecipientLen) {
		return errMalformed
	}
	if n == 0 {
		if len(r.b) != 0 {
			return errMalformed
		}
		return nil
	}
	if uint64(cap(rs)) >= n {
		m.Recipients = rs[:n]
		clear(m.Recipients)
	} else {
		m.Recipients = make([]Recipient, n)
	}
	varsLen := 0
	for i := range m.Recipients {
		rc := &m.Recipients[i]
		rc.Addr = string(r.bytes())
		rc.State = State(r.byte())
		rc.Attempts = r.uint16()
		rc.NextAttempt = r.time()
		rc.LastCode = r.uint16()
		rc.LastEnhanced = intern(&d.enhanced, r.bytes())
		rc.LastText = intern(&d.text, r.bytes())
		if v := r.bytes(); len(v) > 0 {
			rc.Vars = v // aliases rec until copied below
			varsLen += len(v)
		}
		if r.err != nil {
			*m = Message{}
			return r.err
		}
		if rc.State >= numStates {
			*m = Message{}
			return errMalformed
		}
	}
	if len(r.b) != 0 {
		*m = Message{}
		return errMalformed
	}
	if varsLen > 0 {
		// One exact allocation for all variables of the message instead of
		// one per recipient; it also detaches them from rec.
		arena := make([]byte, 0, varsLen)
		for i := range m.Recipients {
			rc := &m.Recipients[i]
			if rc.Vars != nil {
				start := len(arena)
				arena = append(arena, rc.Vars...)
				rc.Vars = arena[start:len(arena):len(arena)]
			}
		}
	}
	return nil
}

// queuedInRecord counts the queued recipients of an encoded record without
// building a Message; Update and Delete need it to keep Stats exact.
func queuedInRecord(rec []byte) (int64, error) {
	r := reader{b: rec}
	v := r.byte()
	if v != metaVersion && v != metaVersionTenant {
		return 0, errMalformed
	}
	r.byte()
	r.bytes()
	r.varint()
	r.varint()
	r.bytes()
	r.bytes()
	if v == metaVersionTenant {
		r.bytes()
	}
	r.varint()
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.b)/minRecipientLen) {
		return 0, errMalformed
	}
	var q int64
	for i := uint64(0); i < n; i++ {
		r.bytes()
		st := State(r.byte())
		r.uint16()
		r.varint()
		r.uint16()
		r.bytes()
		r.bytes()
		r.bytes()
		if r.err != nil {
			return 0, r.err
		}
		if st >= numStates {
			return 0, errMalformed
		}
		if !st.Final() {
			q++
		}
	}
	if len(r.b) != 0 {
		return 0, errMalformed
	}
	return q, nil
}
