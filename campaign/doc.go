// Package campaign turns a delivery's template, stored once, and one
// recipient's variables, stored beside that recipient in the spool, into the
// RFC 5322 message sent to that recipient. Messages are rendered at send time
// and never stored whole.
//
// Algorithm. Compile parses every templated field (from, subject, text, html,
// custom header values, the List-Unsubscribe and Feedback-ID patterns) with
// text/template, the html body with html/template, then renders one sample
// message so that errors html/template only finds while executing (an
// unterminated attribute, say) are reported at compile time, naming the field.
// Each field that uses nothing but literal text and {{.name}} actions is then
// lowered to a flat list of segments. For html the lowering reads the tree
// html/template has already escaped, so every variable keeps the contextual
// escaper chain html/template chose for it (text, attribute, URL, URL query);
// a field with any other construct ({{if}}, functions, JavaScript or CSS
// contexts) keeps executing through the template package: same bytes, slower.
// Render walks the segments (one map lookup per variable, no reflection),
// encodes each body as quoted-printable (RFC 2045 §6.7) so it survives 7-bit
// relays, RFC 2047-encodes non-ASCII header text, folds header lines longer
// than 78 octets at white space (RFC 5322 §2.2.3), refuses lines it cannot fit
// in 998 octets (§2.1.1) and ends every line with CRLF.
//
// Variables substitute with text/template semantics; a missing one renders
// empty. The built-ins recipient, delivery_id and message_id (the Message-ID
// without angle brackets) exist in every field and win over a recipient
// variable of the same name. In list_unsubscribe every value is
// percent-encoded (RFC 3986 §2.3: only unreserved characters stay), so a
// variable can never change the URL's structure; in header fields CR, LF and
// other control characters coming from variables become spaces, so a variable
// can never add a header.
//
// Recipient variables are stored as EncodeVars' compact form: a format byte,
// a uvarint count, then uvarint-length-prefixed key and value pairs in key
// order (about 45 bytes for first_name, last_name and city). ReadCSV and
// ReadNDJSON stream recipient lists one record at a time, so a list of
// millions is never held in memory here.
//
// The package never touches the spool, the network, the envelope or DKIM: it
// only produces bytes.
package campaign
