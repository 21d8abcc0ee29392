package queue

import (
	"errors"
	"fmt"
	"testing"

	"github.com/penstock-mta/penstock/bounce"
	"github.com/penstock-mta/penstock/message"
	"github.com/penstock-mta/penstock/smtpclient"
)

// TestUnbuildableOutcomes: failures no retry can change, found on our side
// before anything was sent, end the recipient at once as bad_message and
// count against neither the site nor the address; a temporary one is
// retried. A sender the client refused for MAIL FROM used to be classified
// not_connected, soft, and retried until validity.
func TestUnbuildableOutcomes(t *testing.T) {
	bc, err := bounce.New(nil, true)
	if err != nil {
		t.Fatal(err)
	}
	q := &Queue{deps: Deps{Bounce: bc}}
	for _, tc := range []struct {
		name   string
		err    error
		hard   bool
		reason bounce.Reason
	}{
		{"sender the client refuses", &smtpclient.Error{Command: "MAIL", Permanent: true,
			Err: fmt.Errorf("%w: sender %q", smtpclient.ErrAddress, "Evil Name <a@src.example>")}, true, bounce.BadMessage},
		{"over the server's SIZE", &smtpclient.Error{Command: "MAIL", Permanent: true, Err: smtpclient.ErrTooLarge}, true, bounce.BadMessage},
		{"render error", &message.Error{Stage: "render", Permanent: true, Err: errors.New("headers.Reply-To: bad")}, true, bounce.BadMessage},
		{"spool read error", &message.Error{Stage: "load", Err: errors.New("disk")}, false, bounce.Unknown},
		{"network", &smtpclient.Error{Command: "DATA", Local: true, Err: errors.New("connection reset")}, false, bounce.NotConnected},
	} {
		o := outcomeOf(tc.err)
		q.classify(&o)
		if o.hard() != tc.hard || o.Verdict.Reason != tc.reason {
			t.Errorf("%s: hard %v reason %q, want %v %q", tc.name, o.hard(), o.Verdict.Reason, tc.hard, tc.reason)
		}
		if tc.reason == bounce.BadMessage && (o.siteError() || o.Verdict.Class != bounce.Hard) {
			t.Errorf("%s: class %q, site error %v", tc.name, o.Verdict.Class, o.siteError())
		}
	}
}
