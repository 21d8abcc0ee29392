package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written in TOML as a string: "30s", "5m",
// "1h30m", or with a day suffix, "5d" or "1d12h". A bare number is refused
// because its unit would be a guess.
type Duration time.Duration

const day = 24 * time.Hour

// ParseDuration parses the TOML form of a Duration: Go duration syntax
// (time.ParseDuration) with an optional leading whole or fractional number of
// days, "5d", "1.5d", "2d6h".
func ParseDuration(s string) (Duration, error) {
	bad := func(why string) (Duration, error) {
		return 0, fmt.Errorf("invalid duration %q: %s; write a number with a unit, like \"30s\", \"5m\", \"1h30m\" or \"5d\"", s, why)
	}
	if s == "" {
		return bad("empty")
	}
	body, neg := s, false
	switch body[0] {
	case '-':
		body, neg = body[1:], true
	case '+':
		body = body[1:]
	}
	if why := unitProblem(body); why != "" && body != "0" { // "0" needs no unit, as in time.ParseDuration
		return bad(why)
	}
	i := strings.IndexByte(body, 'd')
	if i < 0 {
		if body == "" || body[0] == '-' || body[0] == '+' {
			return bad("malformed")
		}
		d, err := time.ParseDuration(body)
		if err != nil {
			if strings.Contains(err.Error(), "missing unit") {
				return bad("missing unit")
			}
			return bad("malformed")
		}
		if neg {
			d = -d
		}
		return Duration(d), nil
	}
	days, rest := body[:i], body[i+1:]
	if days == "" || strings.Trim(days, "0123456789.") != "" {
		return bad("malformed day count")
	}
	var total time.Duration
	if whole, err := strconv.ParseInt(days, 10, 64); err == nil {
		// Whole days are exact; a float would round beyond 2^53 ns.
		if whole > math.MaxInt64/int64(day) {
			return bad("too long")
		}
		total = time.Duration(whole) * day
	} else {
		n, err := strconv.ParseFloat(days, 64)
		if err != nil {
			return bad("malformed day count")
		}
		if n*float64(day) >= math.MaxInt64 {
			return bad("too long")
		}
		total = time.Duration(n * float64(day))
	}
	if rest != "" {
		if rest[0] == '-' || rest[0] == '+' {
			return bad("malformed")
		}
		r, err := time.ParseDuration(rest)
		if err != nil {
			return bad("malformed")
		}
		if r > math.MaxInt64-total {
			return bad("too long")
		}
		total += r
	}
	if neg {
		total = -total
	}
	return Duration(total), nil
}

// String formats d so that ParseDuration reads it back exactly, preferring
// whole units: "5d", "1h30m", "1d12h", "45s", "1.5s".
func (d Duration) String() string {
	if d == 0 {
		return "0s"
	}
	var b strings.Builder
	u := uint64(d)
	if d < 0 {
		b.WriteByte('-')
		u = -u // two's complement magnitude, correct even for MinInt64
	}
	if n := u / uint64(day); n > 0 {
		fmt.Fprintf(&b, "%dd", n)
		u %= uint64(day)
	}
	if n := u / uint64(time.Hour); n > 0 {
		fmt.Fprintf(&b, "%dh", n)
		u %= uint64(time.Hour)
	}
	if n := u / uint64(time.Minute); n > 0 {
		fmt.Fprintf(&b, "%dm", n)
		u %= uint64(time.Minute)
	}
	if u > 0 {
		if u%uint64(time.Second) == 0 {
			fmt.Fprintf(&b, "%ds", u/uint64(time.Second))
		} else {
			// Below a minute time.Duration's own form ("1.5s", "250ms") is
			// exact and readable.
			b.WriteString(time.Duration(u).String())
		}
	}
	return b.String()
}

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// Patterns is a list of MX host name wildcards. In TOML it is either one
// string or an array of strings: mx = "*.google.com" or mx = ["a.*", "b.*"].
type Patterns []string

// UnmarshalText implements encoding.TextUnmarshaler for the single-string
// form; go-toml decodes the array form natively because Patterns is a
// []string.
func (p *Patterns) UnmarshalText(b []byte) error {
	*p = Patterns{string(b)}
	return nil
}

// ParseThreshold parses a flow-control pattern threshold "N/duration",
// e.g. "3/5m": at least N matching replies within the duration.
func ParseThreshold(s string) (count int, per time.Duration, err error) {
	n, d, ok := strings.Cut(s, "/")
	if !ok {
		return 0, 0, fmt.Errorf("threshold %q is not N/duration, like \"3/5m\"", s)
	}
	count, err = strconv.Atoi(strings.TrimSpace(n))
	if err != nil || count < 1 {
		return 0, 0, fmt.Errorf("threshold %q: count %q must be a whole number of at least 1", s, n)
	}
	dur, err := ParseDuration(strings.TrimSpace(d))
	if err != nil {
		return 0, 0, fmt.Errorf("threshold %q: %w", s, err)
	}
	if dur <= 0 {
		return 0, 0, errors.New("threshold " + strconv.Quote(s) + ": duration must be positive")
	}
	return count, time.Duration(dur), nil
}

// ParseRate parses a rate "N/period", e.g. "30/1m": at most N events per
// period (an [[mx_rule]] max_connection_rate). "" is no limit (0, 0).
func ParseRate(s string) (count int, per time.Duration, err error) {
	if s == "" {
		return 0, 0, nil
	}
	n, d, ok := strings.Cut(s, "/")
	if !ok {
		return 0, 0, fmt.Errorf("rate %q is not N/period, like \"30/1m\"", s)
	}
	count, err = strconv.Atoi(strings.TrimSpace(n))
	if err != nil || count < 1 {
		return 0, 0, fmt.Errorf("rate %q: count %q must be a whole number of at least 1", s, n)
	}
	dur, err := ParseDuration(strings.TrimSpace(d))
	if err != nil {
		return 0, 0, fmt.Errorf("rate %q: %w", s, err)
	}
	if time.Duration(dur) < time.Second {
		return 0, 0, fmt.Errorf("rate %q: the period must be at least 1s", s)
	}
	return count, time.Duration(dur), nil
}

// unitProblem names what is wrong with the units of a duration, so that
// "10 seconds" is told "unknown unit" rather than failing deep in the
// day-count parser on the d of "seconds". "" when every number carries one
// of the units ParseDuration accepts.
func unitProblem(body string) string {
	for body != "" {
		n := 0
		for n < len(body) && (body[n] >= '0' && body[n] <= '9' || body[n] == '.') {
			n++
		}
		if n == 0 {
			if body[0] == ' ' || body[0] == '\t' {
				return "spaces are not allowed"
			}
			return "a number must come before each unit"
		}
		body = body[n:]
		u := 0
		for u < len(body) && !(body[u] >= '0' && body[u] <= '9' || body[u] == '.') {
			u++
		}
		unit := body[:u]
		body = body[u:]
		switch unit {
		case "":
			return "missing unit"
		case "ns", "us", "µs", "μs", "ms", "s", "m", "h", "d":
		default:
			if strings.TrimSpace(unit) != unit {
				return "spaces are not allowed"
			}
			return fmt.Sprintf("unknown unit %q (units: d, h, m, s, ms)", unit)
		}
	}
	return ""
}
