package campaign

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
)

// Recipient is one entry of a campaign's recipient list.
type Recipient struct {
	Address string            `json:"address"`
	Vars    map[string]string `json:"vars,omitempty"`
}

// maxNDJSONLine bounds one NDJSON record, so a file without newlines cannot
// make the reader buffer it whole.
const maxNDJSONLine = 1 << 20

// utf8BOM starts files saved by some spreadsheet programs.
const utf8BOM = "\xef\xbb\xbf"

// CheckAddress reports whether addr is a bare addr-spec (RFC 5322 §3.4.1)
// usable as an envelope recipient: no display name, no angle brackets, no
// comments, at most 254 octets (RFC 5321 §4.5.3.1.3 allows 256 with the
// brackets).
func CheckAddress(addr string) error {
	if addr == "" {
		return errors.New("address missing")
	}
	if len(addr) > 254 {
		return fmt.Errorf("address %.40q...: longer than 254 octets", addr)
	}
	if strings.ContainsAny(addr, "<>()\r\n") {
		return fmt.Errorf("address %q: want a bare address like user@example.com", addr)
	}
	a, err := mail.ParseAddress(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if a.Name != "" {
		return fmt.Errorf("address %q: want a bare address like user@example.com", addr)
	}
	return nil
}

// CheckVarName reports whether name can be a recipient variable: a Go
// identifier, so templates can say {{.name}}, and not a built-in.
func CheckVarName(name string) error {
	if name == "" {
		return errors.New("empty variable name")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9' {
			continue
		}
		return fmt.Errorf("variable name %q: use letters, digits and _, not starting with a digit (templates say {{.%s}})", name, name)
	}
	switch name {
	case VarRecipient, VarDeliveryID, VarMessageID:
		return fmt.Errorf("variable name %q is built in", name)
	}
	return nil
}

// checkRecipient validates one parsed record and drops empty variables:
// a missing variable renders as empty anyway, and the spool keeps less.
func checkRecipient(rc *Recipient) error {
	if err := CheckAddress(rc.Address); err != nil {
		return err
	}
	for k, v := range rc.Vars {
		if err := CheckVarName(k); err != nil {
			return err
		}
		if v == "" {
			delete(rc.Vars, k)
		}
	}
	if len(rc.Vars) == 0 {
		rc.Vars = nil
	}
	if n := varsSize(rc.Vars); n > MaxVarsSize {
		return fmt.Errorf("variables take %d bytes, more than %d", n, MaxVarsSize)
	}
	return nil
}

// skipBOM drops a leading UTF-8 byte order mark.
func skipBOM(r io.Reader) io.Reader {
	br := bufio.NewReaderSize(r, 64<<10)
	if b, err := br.Peek(len(utf8BOM)); err == nil && string(b) == utf8BOM {
		br.Discard(len(utf8BOM))
	}
	return br
}

// ReadCSV streams a CSV recipient list (RFC 4180) to fn, one recipient at a
// time. The header row names one column "email" or "address" (any case);
// every other column is a variable of that name. Empty cells give no
// variable. Errors name the line; an error from fn stops the read and is
// returned wrapped with the line.
func ReadCSV(r io.Reader, fn func(Recipient) error) error {
	cr := csv.NewReader(skipBOM(r))
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err == io.EOF {
		return errors.New("recipients csv: empty: want a header row naming an \"email\" or \"address\" column")
	}
	if err != nil {
		return fmt.Errorf("recipients csv: %w", err)
	}
	addrCol := -1
	names := make([]string, len(head))
	seen := make(map[string]int, len(head))
	for i, h := range head {
		h = strings.TrimSpace(h)
		if strings.EqualFold(h, "email") || strings.EqualFold(h, "address") {
			if addrCol >= 0 {
				return fmt.Errorf("recipients csv: line 1: columns %d and %d both name the address", addrCol+1, i+1)
			}
			addrCol = i
			continue
		}
		if err := CheckVarName(h); err != nil {
			return fmt.Errorf("recipients csv: line 1: column %d: %w", i+1, err)
		}
		if j, dup := seen[h]; dup {
			return fmt.Errorf("recipients csv: line 1: columns %d and %d are both %q", j+1, i+1, h)
		}
		seen[h] = i
		names[i] = h
	}
	if addrCol < 0 {
		return errors.New("recipients csv: line 1: no \"email\" or \"address\" column in the header row")
	}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("recipients csv: %w", err) // csv.ParseError names the line
		}
		line, _ := cr.FieldPos(0)
		rc := Recipient{Address: strings.TrimSpace(rec[addrCol])}
		for i, v := range rec {
			if i == addrCol || v == "" {
				continue
			}
			if rc.Vars == nil {
				rc.Vars = make(map[string]string, len(rec)-1)
			}
			rc.Vars[names[i]] = v
		}
		if err := checkRecipient(&rc); err != nil {
			return fmt.Errorf("recipients csv: line %d: %w", line, err)
		}
		if err := fn(rc); err != nil {
			return fmt.Errorf("recipients csv: line %d: %w", line, err)
		}
	}
}

// ReadNDJSON streams newline-delimited JSON recipients to fn, one
// {"address": "...", "vars": {"name": "value"}} object per line. Blank lines
// are skipped; unknown fields, non-string values and trailing data are
// errors naming the line; an error from fn stops the read and is returned
// wrapped with the line.
func ReadNDJSON(r io.Reader, fn func(Recipient) error) error {
	sc := bufio.NewScanner(skipBOM(r))
	sc.Buffer(make([]byte, 0, 64<<10), maxNDJSONLine)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		if b[0] != '{' {
			return fmt.Errorf("recipients ndjson: line %d: want a JSON object", line)
		}
		var rc Recipient
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rc); err != nil {
			return fmt.Errorf("recipients ndjson: line %d: %w", line, err)
		}
		if dec.InputOffset() != int64(len(b)) {
			return fmt.Errorf("recipients ndjson: line %d: data after the JSON object", line)
		}
		rc.Address = strings.TrimSpace(rc.Address)
		if err := checkRecipient(&rc); err != nil {
			return fmt.Errorf("recipients ndjson: line %d: %w", line, err)
		}
		if err := fn(rc); err != nil {
			return fmt.Errorf("recipients ndjson: line %d: %w", line, err)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("recipients ndjson: line %d: longer than %d bytes", line+1, maxNDJSONLine)
		}
		return fmt.Errorf("recipients ndjson: after line %d: %w", line, err)
	}
	return nil
}
