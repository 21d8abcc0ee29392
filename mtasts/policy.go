package mtasts

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/penstock-mta/penstock/tlspolicy"
)

// Limits from RFC 8461.
const (
	// MaxPolicySize: a policy body longer than this is refused (§3.3
	// suggests 64 KiB as the limit senders impose).
	MaxPolicySize = 64 << 10
	// MaxMaxAge: max_age is at most 31557600 seconds, one year (§3.2).
	MaxMaxAge = 31557600
)

// Policy is a parsed MTA-STS policy file (RFC 8461 §3.2).
type Policy struct {
	Mode   string   // tlspolicy.ModeEnforce, ModeTesting or ModeNone
	MX     []string // patterns, lowercased
	MaxAge int64    // seconds
}

// ParsePolicy reads a policy file: "key: value" lines ending in LF or CRLF
// (§3.2). version must be STSv1, mode enforce|testing|none, max_age a
// number of seconds up to MaxMaxAge, and mx (one or more, required unless
// mode is none) host names with an optional leading "*." label. Unknown keys
// are extensions and ignored (§3.2); a repeated key other than mx is an
// error, so an ambiguous policy is never half applied.
func ParsePolicy(data []byte) (Policy, error) {
	if len(data) > MaxPolicySize {
		return Policy{}, fmt.Errorf("mta-sts: policy of %d bytes exceeds %d", len(data), MaxPolicySize)
	}
	var p Policy
	seen := map[string]bool{}
	text := string(data)
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			return Policy{}, fmt.Errorf("mta-sts: policy line %d: %q is not \"key: value\"", n+1, clip(line))
		}
		key = strings.TrimSpace(key)
		val = strings.TrimSpace(val)
		if key == "" || !isFieldName(key) {
			return Policy{}, fmt.Errorf("mta-sts: policy line %d: bad key %q", n+1, clip(key))
		}
		if key != "mx" && seen[key] {
			return Policy{}, fmt.Errorf("mta-sts: policy line %d: %s given twice", n+1, key)
		}
		seen[key] = true
		switch key {
		case "version":
			if val != "STSv1" {
				return Policy{}, fmt.Errorf("mta-sts: policy line %d: version %q, need STSv1", n+1, clip(val))
			}
		case "mode":
			switch val {
			case tlspolicy.ModeEnforce, tlspolicy.ModeTesting, tlspolicy.ModeNone:
				p.Mode = val
			default:
				return Policy{}, fmt.Errorf("mta-sts: policy line %d: mode %q is not enforce, testing or none", n+1, clip(val))
			}
		case "max_age":
			if val == "" || len(val) > 10 || strings.Trim(val, "0123456789") != "" {
				return Policy{}, fmt.Errorf("mta-sts: policy line %d: max_age %q is not a number of seconds", n+1, clip(val))
			}
			age, _ := strconv.ParseInt(val, 10, 64)
			if age > MaxMaxAge {
				return Policy{}, fmt.Errorf("mta-sts: policy line %d: max_age %d exceeds %d (one year)", n+1, age, MaxMaxAge)
			}
			p.MaxAge = age
		case "mx":
			pat := strings.ToLower(strings.TrimSuffix(val, "."))
			if err := checkPattern(pat); err != nil {
				return Policy{}, fmt.Errorf("mta-sts: policy line %d: mx %q: %v", n+1, clip(val), err)
			}
			if len(p.MX) >= 100 {
				return Policy{}, errors.New("mta-sts: policy has more than 100 mx patterns")
			}
			p.MX = append(p.MX, pat)
		}
	}
	switch {
	case !seen["version"]:
		return Policy{}, errors.New("mta-sts: policy has no version field")
	case p.Mode == "":
		return Policy{}, errors.New("mta-sts: policy has no mode field")
	case !seen["max_age"]:
		return Policy{}, errors.New("mta-sts: policy has no max_age field")
	case len(p.MX) == 0 && p.Mode != tlspolicy.ModeNone:
		return Policy{}, fmt.Errorf("mta-sts: policy in mode %s has no mx field", p.Mode)
	}
	return p, nil
}

// isFieldName: RFC 8461 §3.2 field names are ALPHA / DIGIT / "_" / "-" / ".",
// at most 32 characters.
func isFieldName(s string) bool {
	if len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// checkPattern accepts a host name (letters, digits, hyphens, two labels at
// least) with an optional leading "*." wildcard label.
func checkPattern(p string) error {
	host := strings.TrimPrefix(p, "*.")
	if host == "" || len(host) > 253 {
		return errors.New("empty or too long")
	}
	labels := strings.Split(host, ".")
	if len(labels) < 2 {
		return errors.New("not a host name with a domain")
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("bad label %q", clip(l))
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("bad character %q", c)
			}
		}
	}
	return nil
}

// ParseTXT finds the policy id in the TXT records at _mta-sts.<domain>
// (RFC 8461 §3.1): records not starting with "v=STSv1" are ignored; exactly
// one must remain, with "id=" of 1 to 32 letters and digits. Fields are
// separated by ";" with optional spaces; unknown fields are ignored.
func ParseTXT(records []string) (string, error) {
	var rec []string
	for _, r := range records {
		if strings.HasPrefix(r, "v=STSv1") {
			rec = append(rec, r)
		}
	}
	if len(rec) == 0 {
		return "", errors.New("mta-sts: no v=STSv1 TXT record")
	}
	if len(rec) > 1 {
		return "", fmt.Errorf("mta-sts: %d v=STSv1 TXT records, need exactly one (RFC 8461 §3.1)", len(rec))
	}
	id := ""
	for i, f := range strings.Split(rec[0], ";") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return "", fmt.Errorf("mta-sts: TXT field %q is not key=value", clip(f))
		}
		if i == 0 {
			if k != "v" || v != "STSv1" {
				return "", fmt.Errorf("mta-sts: TXT record must start with v=STSv1, got %q", clip(f))
			}
			continue
		}
		if k != "id" {
			continue
		}
		if id != "" {
			return "", errors.New("mta-sts: TXT record has id twice")
		}
		if v == "" || len(v) > 32 || strings.Trim(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != "" {
			return "", fmt.Errorf("mta-sts: TXT id %q is not 1 to 32 letters and digits", clip(v))
		}
		id = v
	}
	if id == "" {
		return "", errors.New("mta-sts: TXT record has no id")
	}
	return id, nil
}

// clip shortens what goes into error messages from hostile input.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
