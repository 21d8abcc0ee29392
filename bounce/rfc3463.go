package bounce

import "strings"

// defaultVerdict classifies a reply no rule matched: by the enhanced status
// code when there is one (RFC 3463), else by the basic reply code
// (RFC 5321 §4.2).
//
// Choices, where the RFCs leave room:
//
//   - The basic code decides permanence. RFC 3463 §2 requires the enhanced
//     class to agree with it; when a server gets that wrong ("450 5.1.1") we
//     trust the reply code, since that is what RFC 5321 §4.2.1 tells a client
//     to act on, and read the enhanced subject and detail under its class.
//
//   - x.7.x (security or policy) is refused/soft, permanent or not. A policy
//     or reputation block (our IP on a block list, failed authentication,
//     content filtering, a rate limit) says something about us, not about the
//     recipient's address: quarantining addresses for it would destroy a good
//     list during a reputation incident, and the block ends once we fix the
//     cause. Retrying lets flow control slow the site down and the operator
//     see the cause; the validity period bounds the retries.
//
//   - Message problems (5.3.4 too big, 5.2.3 too long, 5.6.x content) are
//     refused/soft for the same reason: the address is fine.
//
//   - Protocol errors (5.5.x; 500-504 without an enhanced code) are
//     unknown/soft. They are most often a fault of the session, possibly
//     ours, and must never quarantine a whole list.
//
//   - Destination system trouble (5.3.x other than 5.3.4) is unknown/soft:
//     it is the server, not the address.
//
//   - Network and routing trouble (x.4.1, x.4.2, x.4.6, x.4.7: no answer,
//     bad connection, loop, expired) is unreachable/soft; x.4.4 (unable to
//     route) is invalid_domain/hard.
//
//   - A refused sender address (x.1.7, x.1.8) is sender_rejected/soft: it
//     is about us.
//
//   - Any other reply, permanent or not, is unknown/soft. A reply that says
//     nothing precise (550 alone, 5.0.0, 5.1.0) is no ground to quarantine
//     an address: only a recipient-level reason does that. The price is
//     that such a permanent reply is retried within the validity period
//     (RFC 5321 §4.2.1 would not repeat it): a class of its own for "final
//     but not the address's fault" would avoid that.
func defaultVerdict(code int, enhanced, text string) Verdict {
	if cl, subject, detail, n, ok := parseEnhanced(enhanced); ok && n == len(enhanced) && cl != 2 {
		if code >= 400 && code < 600 {
			cl = code / 100
		}
		return enhancedVerdict(cl, subject, detail)
	}
	return basicVerdict(code, text)
}

func enhancedVerdict(class, subject, detail int) Verdict {
	v := func(r Reason, c Class) Verdict { return Verdict{Reason: r, Class: c, Rule: RuleRFC3463} }
	if class == 4 {
		switch {
		case subject == 2 && detail == 2: // 4.2.2 mailbox full
			return v(MailboxFull, Soft)
		case subject == 1 && (detail == 7 || detail == 8): // our sender address
			return v(SenderRejected, Soft)
		case subject == 4: // network and routing: no answer, bad connection, expired
			return v(Unreachable, Soft)
		case subject == 7: // 4.7.x security or policy: throttling, reputation
			return v(Refused, Soft)
		}
		return v(Unknown, Soft)
	}
	switch subject {
	case 1: // addressing status
		switch detail {
		case 1, 3, 6, 10: // bad mailbox, bad syntax, moved; 5.1.10 (RFC 7505 null MX recipient)
			return v(UserUnknown, Hard)
		case 2: // bad destination system address
			return v(InvalidDomain, Hard)
		case 7, 8: // bad sender mailbox or system: about us
			return v(SenderRejected, Soft)
		}
	case 2: // mailbox status
		switch detail {
		case 1: // mailbox disabled
			return v(AccountDisabled, Hard)
		case 2: // mailbox full: may empty again
			return v(MailboxFull, Soft)
		case 3: // message length exceeds administrative limit
			return v(Refused, Soft)
		}
	case 3: // mail system status
		switch detail {
		case 4: // message too big for system
			return v(Refused, Soft)
		case 2: // system not accepting network messages
			return v(Unreachable, Soft)
		}
		return v(Unknown, Soft)
	case 4: // network and routing status
		switch detail {
		case 4: // unable to route
			return v(InvalidDomain, Hard)
		case 1, 2, 7: // no answer, bad connection, delivery time expired
			return v(Unreachable, Soft)
		case 6: // routing loop
			return v(Unreachable, Soft)
		}
	case 5: // protocol status
		return v(Unknown, Soft)
	case 6: // media: content conversion and the like
		return v(Refused, Soft)
	case 7: // security or policy
		if detail == 13 { // user account disabled (RFC 5248 registry)
			return v(AccountDisabled, Hard)
		}
		return v(Refused, Soft)
	}
	// x.0.0, x.1.0 and the rest say nothing precise: never enough to
	// quarantine an address.
	return v(Unknown, Soft)
}

// userUnknownWords suggest, on a bare 550/551/553, that the mailbox does not
// exist (RFC 5321 §4.2.3: "mailbox unavailable", "user not local",
// "mailbox name not allowed").
var userUnknownWords = []string{
	"user unknown", "unknown user", "no such user", "user not found", "unknown recipient",
	"recipient unknown", "recipient not found", "invalid recipient", "invalid mailbox",
	"mailbox unavailable", "mailbox not found", "no such mailbox", "does not exist",
	"doesn't exist", "not exist", "no mailbox", "unrouteable", "addressee unknown",
	"account not found", "bad destination mailbox", "recipient rejected", "user not local",
	"mailbox name not allowed",
}

func basicVerdict(code int, text string) Verdict {
	v := func(r Reason, c Class) Verdict { return Verdict{Reason: r, Class: c, Rule: RuleDefault} }
	switch {
	case code == 550 || code == 551 || code == 553:
		low := strings.ToLower(text)
		for _, w := range userUnknownWords {
			if strings.Contains(low, w) {
				return v(UserUnknown, Hard)
			}
		}
		return v(Unknown, Soft)
	case code == 552: // exceeded storage allocation (RFC 5321 §4.2.3)
		return v(MailboxFull, Soft)
	case code == 554: // transaction failed: in practice a policy refusal
		return v(Refused, Soft)
	case code >= 500 && code <= 504: // syntax and sequence errors
		return v(Unknown, Soft)
	case code >= 500 && code < 600:
		return v(Unknown, Soft)
	case code >= 400 && code < 500:
		return v(Unknown, Soft)
	case code >= 200 && code < 400:
		// Not a failure at all: nothing to count.
		return v(ErrorIgnored, Ignored)
	}
	// No usable code: treat as temporary, like any unknown error.
	return v(Unknown, Soft)
}
