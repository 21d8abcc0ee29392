package bounce

import (
	"net/netip"
	"regexp"
	"strings"
)

// The normaliser's patterns. They are compiled once and only read after;
// regexp.Regexp is safe for concurrent use.
var (
	reSpace = regexp.MustCompile(`[\s\v]+`) // RE2's \s leaves out \v, which needSpace counts
	reURL   = regexp.MustCompile(`(?i)\b(?:https?|ftp)://[^\s<>"'\])]+|\bwww\.[a-z0-9.-]+\.[a-z]{2,}(?:/[^\s<>"'\])]*)?`)
	reAddr  = regexp.MustCompile(`<?[A-Za-z0-9!#$%&'*+/=?^_{|}~.-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}>?`)
	// RFC 5322 date-time ("Tue, 30 May 2017 12:46:38 +0200 (CEST)"), ISO
	// 8601 ("2023-09-19T15:05:34.324Z"), and bare times ("12:46:38").
	reDate5322 = regexp.MustCompile(`(?i)\b(?:(?:mon|tue|wed|thu|fri|sat|sun),?\s+)?\d{1,2}\s+(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\s+\d{2,4}(?:\s+\d{1,2}:\d{2}(?::\d{2})?(?:\s*[+-]\d{4})?(?:\s*\([A-Z]{2,5}\))?)?`)
	reDateISO  = regexp.MustCompile(`\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?`)
	reTime     = regexp.MustCompile(`\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?(?:\s*(?:Z|[+-]\d{2}:?\d{2}))?`)
	reIPv6     = regexp.MustCompile(`(?i)(?:[0-9a-f]{0,4}:){2,7}(?:[0-9a-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?`)
	reIPv4     = regexp.MustCompile(`\b(?:\d{1,3}\.){3}\d{1,3}\b`)
	// A token of letters, digits and inner '.', '-', '_', '=' or '+', 8 or more
	// long; an id if it has both digits and letters.
	reToken = regexp.MustCompile(`\b[A-Za-z0-9][A-Za-z0-9._=+-]{6,}[A-Za-z0-9]\b`)
	reNum   = regexp.MustCompile(`\b\d+(?:[.,]\d+)*\b`)
	reCode  = regexp.MustCompile(`^(?:[245]\.\d{1,3}\.\d{1,3}|[245]\d\d)$`)
)

// Normalize replaces the variable parts of a reply text with placeholders so
// that one kind of reply reads the same for every recipient and every
// attempt: URLs become <url>, e-mail addresses <addr>, IPv4 and IPv6
// addresses <ip>, dates and times <date>, ids (tokens of 8 or more letters and
// digits mixed, as queue ids and host names of server farms) <id>, other
// numbers <n>. Reply codes and enhanced codes in the text ("550", "5.7.1")
// and short provider codes ("TSS04", "S3150") are kept: they are what the
// operator looks for. Runs of white space become one space.
func Normalize(text string) string {
	// Each pass runs only if a cheap scan says it can match: most replies
	// hold no URL, no date, no IPv6 address.
	s := strings.TrimSpace(text)
	if needSpace(s) {
		s = reSpace.ReplaceAllString(s, " ")
	}
	if strings.Contains(s, "://") || containsFold(s, "www.") {
		s = reURL.ReplaceAllStringFunc(s, func(m string) string {
			// Sentence punctuation after a URL is not part of it.
			return "<url>" + m[len(strings.TrimRight(m, ".,;:!?")):]
		})
	}
	if strings.IndexByte(s, '@') >= 0 {
		s = reAddr.ReplaceAllString(s, "<addr>")
	}
	if !hasDigit(s) {
		return s
	}
	if hasMonth(s) {
		s = reDate5322.ReplaceAllString(s, "<date>")
	}
	if digitsAround(s, '-') {
		s = reDateISO.ReplaceAllString(s, "<date>")
	}
	if digitsAround(s, ':') {
		s = reTime.ReplaceAllString(s, "<date>")
	}
	if strings.Count(s, ":") >= 2 {
		s = reIPv6.ReplaceAllStringFunc(s, func(m string) string {
			if a, err := netip.ParseAddr(m); err == nil && a.Is6() {
				return "<ip>"
			}
			return m
		})
	}
	if strings.Count(s, ".") >= 3 {
		s = reIPv4.ReplaceAllStringFunc(s, func(m string) string {
			if _, err := netip.ParseAddr(m); err == nil {
				return "<ip>"
			}
			return m
		})
	}
	s = reToken.ReplaceAllStringFunc(s, func(m string) string {
		if hasDigit(m) && hasLetter(m) {
			return "<id>"
		}
		return m
	})
	return reNum.ReplaceAllStringFunc(s, func(m string) string {
		if reCode.MatchString(m) {
			return m
		}
		return "<n>"
	})
}

// needSpace reports white space other than single spaces.
func needSpace(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\t', '\n', '\v', '\f', '\r':
			return true
		case ' ':
			if i+1 < len(s) && s[i+1] == ' ' {
				return true
			}
		}
	}
	return false
}

// digitsAround reports a digit, sep, digit sequence.
func digitsAround(s string, sep byte) bool {
	for i := 1; i+1 < len(s); i++ {
		if s[i] == sep && isDigit(s[i-1]) && isDigit(s[i+1]) {
			return true
		}
	}
	return false
}

// hasMonth reports an English month abbreviation after a space (a
// precondition of an RFC 5322 date).
func hasMonth(s string) bool {
	for i := 0; i+3 < len(s); i++ {
		if s[i] != ' ' {
			continue
		}
		b := [3]byte{s[i+1] | 0x20, s[i+2] | 0x20, s[i+3] | 0x20}
		switch string(b[:]) {
		case "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec":
			return true
		}
	}
	return false
}

func containsFold(s, lowerSub string) bool {
	for i := 0; i+len(lowerSub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(lowerSub)], lowerSub) {
			return true
		}
	}
	return false
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func hasDigit(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			return true
		}
	}
	return false
}

func hasLetter(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i] | 0x20; c >= 'a' && c <= 'z' {
			return true
		}
	}
	return false
}
