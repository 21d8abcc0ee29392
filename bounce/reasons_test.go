package bounce

import "testing"

// TestReportReplies: replies as delivery reports quote them, each of which
// was classified wrong before (sender rejections as unknown users, codeless
// texts, continuation codes, vague replies as hard).
func TestReportReplies(t *testing.T) {
	c, err := New(nil, true)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		code     int
		enhanced string
		text     string
		reason   Reason
		class    Class
	}{
		// Our return path refused: never the recipient's fault.
		{550, "5.1.0", "<bounce@mailer.example.com> sender rejected. Refer to Error Codes section at https://www.example.net/ AUP#CDRBL", SenderRejected, Soft},
		{550, "", "Unroutable sender address", SenderRejected, Soft},
		{550, "5.1.7", "No such domain sender.example.com.", SenderRejected, Soft},
		{550, "5.7.1", "can't determine Purported Responsible Address", SenderRejected, Soft},
		// A text bounce without a reply code: the enhanced class stands in.
		{0, "5.0.0", "kijitora@example.org [User unknown]", UserUnknown, Hard},
		{0, "5.0.0", "The user(s) account is disabled.", AccountDisabled, Hard},
		{0, "5.0.0", "Could not deliver for the last 432000 seconds. Giving up.", Unreachable, Soft},
		{0, "5.0.0", "DNS lookup failure: host mx.example.org not found", InvalidDomain, Hard},
		// The reply code repeated on every line of a multiline reply.
		{550, "5.2.1", "The user you are trying to contact is receiving mail at a rate that 550-5.2.1 prevents additional messages from being delivered.", Refused, Soft},
		// The same words in a transient reply are retried.
		{450, "4.1.1", "<a@example.org>: Recipient address rejected: User unknown in virtual alias table", UserUnknown, Soft},
		// Not proof that the address is gone.
		{554, "5.7.1", "<a@example.org>: Relay access denied", Unreachable, Soft},
		{554, "", "<a@example.org>... Remote protocol error 550 example.org (smtp)... 550 Host unknown", Unknown, Soft},
		{0, "5.0.0", "Name service error for domain example.com: Host not found, try again", Unreachable, Soft},
		{550, "4.4.7", "QUEUE.Expired; message expired", Unreachable, Soft},
		{550, "5.1.1", "RCP-P2 Refused due to recipient preferences", Refused, Soft},
		{550, "", "Rejected", Unknown, Soft},
		{550, "5.0.0", "", Unknown, Soft},
		// Recipient-level words kept.
		{550, "5.5.0", "Le compte du destinataire est bloque. The recipient account is blocked.", AccountDisabled, Hard},
		{525, "5.7.13", "Disabled recipient address", AccountDisabled, Hard},
		{0, "5.0.0", "The e-mail message could not be delivered because the user's mailfolder is full.", MailboxFull, Soft},
	}
	for _, tc := range tests {
		v := c.Classify(tc.code, tc.enhanced, tc.text)
		if v.Reason != tc.reason || v.Class != tc.class {
			t.Errorf("Classify(%d, %q, %q) = %s/%s by %s, want %s/%s", tc.code, tc.enhanced, tc.text, v.Reason, v.Class, v.Rule, tc.reason, tc.class)
		}
	}
}

// An operator's rule still decides first, even against the new
// sender-rejection rules.
func TestUserRuleOverridesSenderRejected(t *testing.T) {
	c, err := New([]Rule{{Name: "mine", Match: "sender rejected", Reason: UserUnknown, Class: Hard}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if v := c.Classify(550, "5.1.0", "<b@example.com> sender rejected"); v.Rule != "mine" || v.Class != Hard {
		t.Fatalf("got %+v", v)
	}
}

func TestStripContinuationCodes(t *testing.T) {
	for in, want := range map[string]string{
		"550-5.1.1 The email account 550-5.1.1 does not exist 550 5.1.1 https://x": "The email account does not exist https://x",
		"no continuation here":            "no continuation here",
		"550-5.1.1a not an enhanced code": "5.1.1a not an enhanced code",
	} {
		if got := stripContinuationCodes(550, in); got != want {
			t.Errorf("stripContinuationCodes(%q) = %q, want %q", in, got, want)
		}
	}
}
