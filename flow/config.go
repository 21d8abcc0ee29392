package flow

import (
	"regexp"
	"time"
)

// Pattern puts a site in a state at once when a remote reply matches.
type Pattern struct {
	Match    *regexp.Regexp
	Action   string // Backoff, Suspended or Limited
	Duration time.Duration
	Limits   Limits        // action Limited: the caps
	Count    int           // threshold: Count matches ...
	Per      time.Duration // ... within Per (0/0: the first match acts)
	// Site: the reply speaks of the whole site (its servers are busy),
	// not of the source it was given to; it acts on the site's state.
	Site bool
}

// Config holds the thresholds. Zero fields take the defaults of Defaults.
type Config struct {
	Window         time.Duration
	MinAttempts    int
	ErrorRatio     float64
	SuspendRatio   float64
	ConnFactor     float64
	RateFactor     float64
	SuspendFor     time.Duration
	MaxSuspend     time.Duration
	ProbeInterval  time.Duration
	RecoverAfter   time.Duration
	StepInterval   time.Duration
	LocalSiteRatio float64
	LocalMinSites  int
	Patterns       []Pattern
}

// Defaults are the documented defaults of [flow_control].
func Defaults() Config {
	return Config{
		Window:         5 * time.Minute,
		MinAttempts:    20,
		ErrorRatio:     0.3,
		SuspendRatio:   0.6,
		ConnFactor:     0.5,
		RateFactor:     0.5,
		SuspendFor:     5 * time.Minute,
		MaxSuspend:     2 * time.Hour,
		ProbeInterval:  time.Minute,
		RecoverAfter:   5 * time.Minute,
		StepInterval:   time.Minute,
		LocalSiteRatio: 0.5,
		LocalMinSites:  4,
	}
}

func (c Config) withDefaults() Config {
	d := Defaults()
	if c.Window <= 0 {
		c.Window = d.Window
	}
	if c.MinAttempts <= 0 {
		c.MinAttempts = d.MinAttempts
	}
	if c.ErrorRatio <= 0 {
		c.ErrorRatio = d.ErrorRatio
	}
	if c.SuspendRatio <= 0 {
		c.SuspendRatio = d.SuspendRatio
	}
	if c.ConnFactor <= 0 {
		c.ConnFactor = d.ConnFactor
	}
	if c.RateFactor <= 0 {
		c.RateFactor = d.RateFactor
	}
	if c.SuspendFor <= 0 {
		c.SuspendFor = d.SuspendFor
	}
	if c.MaxSuspend <= 0 {
		c.MaxSuspend = d.MaxSuspend
	}
	if c.ProbeInterval <= 0 {
		c.ProbeInterval = d.ProbeInterval
	}
	if c.RecoverAfter <= 0 {
		c.RecoverAfter = d.RecoverAfter
	}
	if c.StepInterval <= 0 {
		c.StepInterval = d.StepInterval
	}
	if c.LocalSiteRatio <= 0 {
		c.LocalSiteRatio = d.LocalSiteRatio
	}
	if c.LocalMinSites <= 0 {
		c.LocalMinSites = d.LocalMinSites
	}
	return c
}
