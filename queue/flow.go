package queue

import (
	"time"

	"github.com/penstock-mta/penstock/flow"
)

// Flow is dynamic flow control as the dispatcher sees it: it reports every
// attempt and asks before opening a connection. Package flow implements it
// in-process; the cluster mode shares it through Redis.
type Flow interface {
	// Check says how a site may be used now; a Decision with Probe set
	// has given this caller the probe slot.
	Check(site string, now time.Time) flow.Decision
	// Peek is Check without side effects.
	Peek(site string, now time.Time) flow.Decision
	// Record reports the outcome of one attempt (a connection or a
	// message). Recipient-level rejections (user unknown) are reported as
	// successes of the site: they are the recipient's problem.
	Record(ev flow.Event)
	// Reset ends a backoff or suspension at once (operator resume).
	Reset(site string)
	// Local reports whether errors across many sites point at our side.
	Local() (bool, flow.LocalProblem)
}
