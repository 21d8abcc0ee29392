package campaign

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// varsFormat is the first byte of encoded variables, so the layout can change
// while recipients encoded by this one are still queued.
const varsFormat = 1

// MaxVarsSize caps one recipient's encoded variables: the spool keeps them
// for every queued recipient, so a runaway column must not inflate it.
const MaxVarsSize = 16 << 10

// EncodeVars returns vars in the compact form stored with each recipient:
// format byte 1, uvarint count, then for each variable in key order a
// uvarint key length, the key, a uvarint value length and the value. Empty
// vars encode as nil. The form is canonical: equal maps give equal bytes.
func EncodeVars(vars map[string]string) []byte {
	if len(vars) == 0 {
		return nil
	}
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b := make([]byte, 0, varsSize(vars))
	b = append(b, varsFormat)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		v := vars[k]
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	return b
}

// varsSize is len(EncodeVars(vars)), without encoding.
func varsSize(vars map[string]string) int {
	if len(vars) == 0 {
		return 0
	}
	n := 1 + uvarintLen(uint64(len(vars)))
	for k, v := range vars {
		n += uvarintLen(uint64(len(k))) + len(k) + uvarintLen(uint64(len(v))) + len(v)
	}
	return n
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// DecodeVars reverses EncodeVars. It accepts only the canonical form (keys
// strictly ascending, shortest uvarints, no trailing bytes) and returns an
// error, never a panic, for anything else. nil or empty input gives a nil map.
func DecodeVars(b []byte) (map[string]string, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if b[0] != varsFormat {
		return nil, fmt.Errorf("campaign: vars: unknown format %d", b[0])
	}
	p := b[1:]
	count, err := readUvarint(&p)
	if err != nil {
		return nil, err
	}
	// Each variable takes at least two bytes (two zero lengths): this bounds
	// the map before trusting count.
	if count == 0 || count > uint64(len(p))/2 {
		return nil, fmt.Errorf("campaign: vars: count %d does not fit %d bytes", count, len(p))
	}
	// One string holds every key and value; the map's strings share it.
	s := string(p)
	off := 0
	next := func() (string, error) {
		q := p[off:]
		l, err := readUvarint(&q)
		if err != nil {
			return "", err
		}
		off = len(p) - len(q)
		if l > uint64(len(q)) {
			return "", errors.New("campaign: vars: truncated")
		}
		v := s[off : off+int(l)]
		off += int(l)
		return v, nil
	}
	m := make(map[string]string, count)
	prev := ""
	for i := uint64(0); i < count; i++ {
		k, err := next()
		if err != nil {
			return nil, err
		}
		if i > 0 && k <= prev {
			return nil, fmt.Errorf("campaign: vars: key %q out of order after %q", k, prev)
		}
		v, err := next()
		if err != nil {
			return nil, err
		}
		m[k] = v
		prev = k
	}
	if off != len(p) {
		return nil, fmt.Errorf("campaign: vars: %d trailing bytes", len(p)-off)
	}
	return m, nil
}

// readUvarint consumes one shortest-form uvarint from *p.
func readUvarint(p *[]byte) (uint64, error) {
	v, n := binary.Uvarint(*p)
	if n == 0 {
		return 0, errors.New("campaign: vars: truncated")
	}
	if n < 0 || n != uvarintLen(v) {
		return 0, errors.New("campaign: vars: malformed length")
	}
	*p = (*p)[n:]
	return v, nil
}
