package config

import (
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/penstock-mta/penstock/bounce"
	"github.com/penstock-mta/penstock/flow"
	"github.com/penstock-mta/penstock/mxrule"
	"github.com/penstock-mta/penstock/quarantine"
	"github.com/penstock-mta/penstock/quota"
)

// This file translates the configuration into the configurations of the
// components below it (rules, flow control, bounce classification, the
// quarantine), so
// that each translation is written once and the assembler only passes
// the results on. The queue's translation is queue.ConfigFrom.

// RuleSet builds the MX rule set: the user's rules in order, then the
// shipped provider rules (unless use_shipped_rules = false), then the
// built-in catch-all.
func (c *Config) RuleSet() (*mxrule.Set, error) {
	var rules []mxrule.Rule
	// An operator's rule named like a shipped one replaces it: that is
	// how a shipped rule is tuned (the README's yahoo example).
	mine := map[string]int{}
	conv := func(file string, rs []MXRule, builtin bool) error {
		for _, r := range rs {
			if builtin {
				if i, ok := mine[r.Name]; ok {
					rules[i].ReplacesShipped = true
					continue
				}
			} else {
				mine[r.Name] = len(rules)
			}
			sc, err := mxrule.ParseScope(r.Scope)
			if err != nil {
				return fmt.Errorf("%s:%d: [[mx_rule]] %q: scope: %w", file, r.Line, r.Name, err)
			}
			cn, cper, err := ParseRate(r.MaxConnectionRate)
			if err != nil {
				return fmt.Errorf("%s:%d: [[mx_rule]] %q: max_connection_rate: %w", file, r.Line, r.Name, err)
			}
			rules = append(rules, mxrule.Rule{
				Name: r.Name, Patterns: r.MX, Scope: sc,
				MaxConnectionRate: quota.Rate{N: cn, Per: cper}, MessagesPerDay: r.MessagesPerDay,
				MaxConnections: r.MaxConnections, MaxMessagesPerConnection: r.MaxMessagesPerConnection,
				MessagesPerHour: r.MessagesPerHour, ConnectTimeout: time.Duration(r.ConnectTimeout),
				CommandTimeout: time.Duration(r.CommandTimeout), DataTimeout: time.Duration(r.DataTimeout),
				TLS: r.TLS, NoChunking: r.Chunking != nil && !*r.Chunking, Builtin: builtin,
			})
		}
		return nil
	}
	if err := conv(c.File, c.MXRules, false); err != nil {
		return nil, err
	}
	if c.Server.UseShippedRules {
		shipped, err := DecodeMXRules("mxrule/providers.toml", mxrule.ShippedTOML())
		if err != nil {
			return nil, fmt.Errorf("shipped rules: %w", err)
		}
		if err := conv("mxrule/providers.toml", shipped, true); err != nil {
			return nil, err
		}
	}
	return mxrule.New(rules)
}

// FlowConfig is flow control's configuration: [flow_control] and its
// patterns, then the shipped patterns.
func (c *Config) FlowConfig() (flow.Config, error) {
	f := c.FlowControl
	fc := flow.Config{
		Window: time.Duration(f.Window), MinAttempts: f.MinAttempts, ErrorRatio: f.ErrorRatio,
		SuspendRatio: f.SuspendRatio, ConnFactor: f.ConnectionsFactor, RateFactor: f.RateFactor,
		SuspendFor: time.Duration(f.SuspendFor), MaxSuspend: time.Duration(f.MaxSuspend),
		ProbeInterval: time.Duration(f.ProbeInterval), RecoverAfter: time.Duration(f.RecoverAfter),
		StepInterval: time.Duration(f.StepInterval), LocalSiteRatio: f.LocalSiteRatio, LocalMinSites: f.LocalMinSites,
	}
	for i, p := range f.Patterns {
		re, err := regexp.Compile(p.Match)
		if err != nil {
			return fc, fmt.Errorf("[[flow_control.pattern]] #%d: match: %w", i+1, err)
		}
		var count int
		var per time.Duration
		if p.Threshold != "" {
			count, per, err = ParseThreshold(p.Threshold)
			if err != nil {
				return fc, fmt.Errorf("[[flow_control.pattern]] #%d: %w", i+1, err)
			}
		}
		action := flow.Backoff
		switch p.Action {
		case ActionSuspend:
			action = flow.Suspended
		case ActionLimit:
			action = flow.Limited
		}
		cn, cper, err := ParseRate(p.MaxConnectionRate)
		if err != nil {
			return fc, fmt.Errorf("[[flow_control.pattern]] #%d: max_connection_rate: %w", i+1, err)
		}
		limits := flow.Limits{MaxConns: p.MaxConnections, MaxMsgsPerConn: p.MaxMessagesPerConnection,
			PerHour: p.MessagesPerHour, ConnRateN: cn, ConnRatePer: cper}
		d := time.Duration(p.Duration)
		if d <= 0 {
			d = time.Duration(f.SuspendFor)
		}
		fc.Patterns = append(fc.Patterns, flow.Pattern{Match: re, Action: action, Duration: d, Count: count, Per: per, Limits: limits})
	}
	fc.Patterns = append(fc.Patterns, flow.ShippedPatterns()...)
	return fc, nil
}

// BounceClassifier is the classifier of replies and bounces: the
// operator's [[bounce_rule]] entries before the shipped rules.
func (c *Config) BounceClassifier() (*bounce.Classifier, error) {
	var rules []bounce.Rule
	for _, r := range c.BounceRules {
		rules = append(rules, bounce.Rule{Name: r.Name, Code: r.Code, Enhanced: r.Enhanced, Match: r.Match,
			Reason: bounce.Reason(r.Reason), Class: bounce.Class(r.Class), Retry: time.Duration(r.Retry)})
	}
	cl, err := bounce.New(rules, true)
	if err != nil {
		return nil, fmt.Errorf("[[bounce_rule]]: %w", err)
	}
	return cl, nil
}

// QuarantineConfig is the quarantine's configuration from [quarantine];
// logger receives its load-time reports.
func (c *Config) QuarantineConfig(logger *slog.Logger) quarantine.Config {
	q := c.Quarantine
	return quarantine.Config{MaxErrors: q.MaxErrors, SignificantErrorDelay: time.Duration(q.SignificantErrorDelay),
		ResetAfter: time.Duration(q.ResetAfter), CaseInsensitiveLocal: !q.CaseSensitiveLocal, Logger: logger}
}
