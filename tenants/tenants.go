// Package tenants names the customers mail is sent for and their limits:
// the name rule (what the API's "tenant" and the X-Penstock-Tenant
// injection header accept), a tenant's messages_per_hour (counted under
// the quota key "rate|tenant|NAME", shared by a cluster like any quota)
// and its weight in a site's fair share.
//
// The fair share itself is the queue's (start-time fair queuing over a
// site's new mail: see package queue); tenants only says who weighs what.
// tenants never counts and never schedules.
package tenants

import (
	"errors"
	"fmt"
)

// Header is the injection header field that names a message's tenant. It
// is removed before the message is stored: receivers never see it.
const Header = "X-Penstock-Tenant"

// ErrBadName is wrapped by Check's error.
var ErrBadName = errors.New("bad tenant name")

// Check says what is wrong with a tenant name: 1 to 64 letters, digits,
// '.', '_', '-' or '@' ("" is no tenant, and fine).
func Check(name string) error {
	if len(name) > 64 {
		return fmt.Errorf("%w: %d characters, at most 64", ErrBadName, len(name))
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '@') {
			return fmt.Errorf("%w: %q has %q: use letters, digits, '.', '_', '-', '@'", ErrBadName, name, c)
		}
	}
	return nil
}

// Limit is one tenant's configuration. Build it with NewLimit, which
// names its quota key once (it is asked for at every message).
type Limit struct {
	PerHour int // messages per hour across all sites; 0 = unlimited
	Weight  int // share of a site when tenants compete; below 1 counts as 1
	key     string
}

// NewLimit is the configuration of tenant name.
func NewLimit(name string, perHour, weight int) Limit {
	return Limit{PerHour: perHour, Weight: weight, key: RateKey(name)}
}

// Key is the quota key of the messages_per_hour of tenant name, whose
// Limit this is.
func (l Limit) Key(name string) string {
	if l.key != "" {
		return l.key
	}
	return RateKey(name)
}

// Set is the configured tenants by name; a nil Set has none. A tenant not
// in it has no quota and weight 1.
type Set map[string]Limit

// Weight is the tenant's weight, at least 1.
func (s Set) Weight(name string) int { return max(1, s[name].Weight) }

// RateKey is the quota key of a tenant's messages_per_hour.
func RateKey(name string) string { return "rate|tenant|" + name }
