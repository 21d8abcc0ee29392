// Package message owns the body pipeline: the one ordered list of stages
// that turns a spooled message into the exact bytes sent for it, applied at
// send time to every message, relayed or campaign.
//
// The stages run in a fixed order, defined here in New and nowhere else:
//
//  1. render: a message stored as a template and variables (a campaign
//     recipient) is rendered; a message stored whole (SMTP or API
//     injection) is read from the spool.
//  2. header fixes: line ends are made canonical CRLF (a bare LF or a
//     bare CR becomes CRLF: RFC 5322 §2.3 allows CR and LF only
//     together), the message ends with CRLF, and the header is separated
//     from the body by an empty line (RFC 5322 §2.1), inserted before the
//     first line that cannot be a header field when there is none. The
//     header end is recorded (Send.HeaderLen) for the stages after.
//     Penstock adds no Date or Message-ID to relayed mail: nothing
//     upstream does header rewriting of that kind, and the submitter's
//     header is theirs (the API's own builder writes both).
//  3. signing: empty unless a signer is configured; it sees the header and
//     body in their final form and prepends its field.
//
// Every stage sees the bytes that will be sent, before dot-stuffing:
// smtpclient.Send stuffs a leading "." and writes the final "." itself
// (RFC 5321 §4.5.2), so a signature computed here covers what the receiver
// reads back after unstuffing.
//
// Caching. A stage says per message whether its output depends on the
// transaction's recipients (Scope). The results of the leading stages that
// do not (for a relayed message: every stage) are kept in a bounded LRU
// cache keyed by spool message ID, so a message whose recipients span
// several domains, hence several transactions, is read, fixed and signed
// once, not once per transaction; Forget drops the entry when the message
// is done, and an entry is reused for an hour at most, so a retry days
// later is signed afresh. Only messages with more than one recipient are cached: a
// single-recipient message (every campaign message) has nothing to share.
// A campaign body whose text and html use no variable at all is rendered
// once per template by the campaign package itself, and the render stage
// names it in Send.BodyKey so a later stage can key its own per-body work
// (a DKIM body hash) on it.
//
// Buffers. With Options.AppendLoad (spool.AppendBody) a message is read into
// a buffer the pipeline lends to the send and takes back at Release, which
// the queue calls once the message is written to the connection: a 100 KB
// message no longer costs a 100 KB allocation per transaction. A cached
// message keeps its buffer (the cache may hand it to later sends), and a
// stage must keep nothing of s.Data beyond its Apply.
//
// Errors. A stage error is temporary unless the stage marks it with
// Permanent: temporary errors (the spool could not be read) are retried
// like any local failure; permanent ones (a rendered header that does not
// parse, stored variables that do not decode) can never succeed, and the
// queue fails the recipient at once without blaming the site or the
// address.
//
// # How to add a body stage
//
// Implement Stage: Name (used in errors and results), Scope (PerMessage
// when the output depends only on the spooled message, PerSend when it
// depends on the transaction: its recipients or envelope sender), and
// Apply, which reads s.Data (and s.Header, s.Body after the header fixes)
// and replaces s.Data with a new slice when it changes the message (never
// write into s.Data: it may be shared with other sends through the cache;
// Prepend does it right for a new header field). Return Permanent(err) for
// an error no retry can change. Record what the delivery log should show
// with s.Note. Then give the stage its slot in Options and say in New
// where it runs. A signer needs none of this: SignStage turns a function
// from the message to the header field to prepend into the stage for
// Options.Sign, e.g. for DKIM (RFC 6376 §5.6: the field goes first)
//
//	message.New(message.Options{AppendLoad: sp.AppendBody, Render: render,
//		Sign: message.SignStage("dkim", func(msg []byte) ([]byte, string, error) {
//			f, err := signer.Sign(msg)
//			return f, "signed by d=example.com s=sel", err
//		})})
//
// The package never touches the network, the queue or the delivery log: it
// only produces bytes.
package message
