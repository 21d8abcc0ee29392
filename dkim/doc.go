// Package dkim signs outgoing mail with DKIM (RFC 6376), with RSA-SHA256 and
// Ed25519-SHA256 keys (RFC 8463), and checks that the keys are published in
// DNS. It owns the [[dkim]] keys once loaded: reading and vetting the key
// files, choosing which keys sign a message, and making the DKIM-Signature
// fields. It never changes a message in place: Sign returns the fields to
// write in front of it, and WriteSigned writes both (without the message's
// own signatures when keep_existing is false).
//
// Choosing the keys. The From field's domain (RFC 5322 §3.6.2) is read; with
// no From, several From fields, or authors of several domains, the message
// is left unsigned with a reason. The keys of the From domain sign; else
// those of a parent domain, up to the organisational domain (public suffix
// plus one label), whose [[dkim]] entry says sign_subdomains; else those of
// the pool's dkim_domain or of [dkim_default] domain, a third-party
// signature that Result reports as not aligned for DMARC (RFC 7489 §3.1.1).
// Of a domain's keys only those inside their active_from/retire_after window
// sign, and of those the newest of each algorithm: an RSA and an Ed25519 key
// both sign (two signatures), and a rotation hands over from the old
// selector to the new at the new one's active_from with no gap.
//
// Signing. Each signature lists in h= the configured fields present in the
// message, as many times as they occur, and the over-signed ones (From,
// Reply-To, Subject, To, Cc by default) once more, so that a field of that
// name added later breaks the signature (RFC 6376 §5.4.2, §8.15). Header and
// body are canonicalized relaxed or simple (§3.4), the body hashed with
// SHA-256 into bh=, then the selected fields and the signature field with an
// empty b= are hashed and signed (§3.7). No l= tag is ever written: it would
// let anyone append to the body.
//
// Why the signer is written here and not taken from go-msgauth: its signer
// hashes the body anew for every message and cannot take a body hash
// computed earlier, while a campaign sends one body to many recipients and
// must hash it once per template. A Body computes each canonical hash on
// first use and keeps it; SignHeader takes a header and a shared Body. The
// canonicalization and hashing are small and follow the RFC step by step;
// go-msgauth's verifier checks them independently, in the tests and in
// Check's self-test of every published key.
//
// RSA signatures cost most of the CPU of signing: in a cgo build on Linux
// they are made by OpenSSL 3's libcrypto, dlopened at run time (rsa.go,
// rsa_libcrypto.go), and by crypto/rsa in a static build or where
// libcrypto.so.3 is missing. RSASSA-PKCS1-v1_5 is deterministic, so both
// make the same bytes; each key's libcrypto signature of a test digest is
// verified with crypto/rsa before libcrypto signs with it.
//
// Keys are PEM files (PKCS#1 or PKCS#8 RSA of at least 2048 bits, PKCS#8
// Ed25519). New refuses a key that cannot be read, is weak, or is readable
// by every user of the machine, naming the file and the config line; a
// group-readable key is a warning. Check looks each selector's TXT record up
// and tells whether it publishes our key (published), nothing (missing),
// another key (different), an empty p= (revoked) or something unreadable.
package dkim
