package flow

import (
	"regexp"
	"time"
)

// shipped are the big providers' known throttle replies. Each puts the site
// in a state at once instead of waiting for the error ratio to build up.
// The texts come from the providers' public postmaster documentation.
var shipped = []struct {
	match    string
	action   string
	duration time.Duration
	why      string
	site     bool // about the site's servers, not the source (see Pattern.Site)
}{
	// Yahoo/AOL: "421 4.7.0 [TSS04] Messages from x.x.x.x temporarily deferred
	// due to unexpected volume or user complaints" (Yahoo Sender Hub, SMTP
	// error codes). Yahoo asks senders to slow down.
	{`\[TSS04\]`, Backoff, 30 * time.Minute, "Yahoo temporary deferral for volume or complaints", false},
	// Yahoo: "[TSS09]" = all further mail from the IP is deferred for a while.
	{`\[TSS09\]`, Suspended, 30 * time.Minute, "Yahoo: IP temporarily suspended", false},
	// Yahoo: "[TS03]" = permanently deferred (blocked) — stop hammering.
	{`\[TS0[123]\]`, Suspended, time.Hour, "Yahoo: mail from this IP deferred/blocked", false},
	// Gmail: "421 4.7.28 ... has detected an unusual rate of mail
	// originating from your IP address" (Google Workspace SMTP error
	// reference).
	{`4\.7\.28|unusual rate of (unsolicited )?mail`, Backoff, 30 * time.Minute, "Gmail rate limiting", false},
	// Gmail: "421 4.7.0 ... Try again later, closing connection" under load.
	// It speaks of Gmail's load, not of the IP: site-wide.
	{`^421 4\.7\.0 .*gsmtp`, Backoff, 10 * time.Minute, "Gmail asks to try later", true},
	// Microsoft (Outlook.com/Hotmail): "451 4.7.500 Server busy. Please try
	// again later" and "4.7.650 The mail server [IP] has been temporarily
	// rate limited due to IP reputation" (Microsoft NDR docs).
	{`4\.7\.(500|650|651|652|653)|temporarily rate limited`, Backoff, 30 * time.Minute, "Microsoft rate limiting", false},
	// Microsoft: "550 5.7.1 ... Service unavailable, Client host [IP] blocked
	// using Spamhaus" / "S3150" / "S3140" block lists (Outlook.com postmaster).
	{`\bS3(140|150)\b`, Suspended, time.Hour, "Microsoft: IP on its block list", false},
	// Orange: "421 mwinf ... Service refuse, veuillez essayer plus tard. OFR004"
	// / "Trop de connexions" (Orange postmaster).
	{`\bOFR00[0-9]\b|[Tt]rop de connexions`, Backoff, 20 * time.Minute, "Orange throttling", false},
	// GMX/Web.de: "421-4.7.0 ... too many connections" / "Temporary rejected"
	// (GMX postmaster).
	{`(?i)too many (connections|concurrent)`, Backoff, 10 * time.Minute, "too many connections", false},
	// Comcast: "421 ... rate limited" / "RL000001" rate-limit codes.
	{`\bRL0000\d\d\b`, Backoff, 20 * time.Minute, "Comcast rate limiting", false},
	// Generic: "421 ... rate limit(ed) / rate exceeded / too much mail".
	{`(?i)rate ?limit|rate exceeded|too (much|many) (mail|messages)`, Backoff, 10 * time.Minute, "generic rate limiting", false},
}

// ShippedPatterns returns the shipped throttle-reply patterns.
func ShippedPatterns() []Pattern {
	out := make([]Pattern, len(shipped))
	for i, s := range shipped {
		out[i] = Pattern{Match: regexp.MustCompile(s.match), Action: s.action, Duration: s.duration, Site: s.site}
	}
	return out
}
