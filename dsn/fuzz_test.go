package dsn

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse: Parse never panics, returns a report or an error (not both,
// not neither), and a report is internally consistent. Seeds are every
// message in testdata, the real bounces of the corpus under 8 KB (small
// enough to mutate quickly), plus a composed DSN.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.eml"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed corpus: %v", err)
	}
	real, _ := filepath.Glob(filepath.Join("testdata", "corpus", "samples", "*.eml"))
	for _, name := range append(files, real...) {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		if len(b) > 8<<10 && strings.Contains(name, "corpus") {
			continue
		}
		f.Add(b)
	}
	if b, err := testCompose().Bytes(); err == nil {
		f.Add(b)
	}
	f.Add([]byte("From: MAILER-DAEMON@a\nSubject: failure notice\n\n<a@b.example>: 550 5.1.1 x\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		r, err := Parse(msg)
		if (r == nil) == (err == nil) {
			t.Fatalf("report %v, error %v", r, err)
		}
		if r == nil {
			return
		}
		switch r.Kind {
		case KindDSN:
			if len(r.Recipients) == 0 {
				t.Fatal("DSN without recipients")
			}
		case KindARF:
			if r.Feedback == nil || r.Feedback.Type == "" {
				t.Fatal("ARF without feedback type")
			}
		case KindAutoReply, KindUnknown:
		default:
			t.Fatalf("kind %d", r.Kind)
		}
		if len(r.Recipients) > maxRecipients || len(r.OriginalHeaders) > maxHeaderFields {
			t.Fatalf("%d recipients, %d headers: over the limits", len(r.Recipients), len(r.OriginalHeaders))
		}
		for _, rs := range r.Recipients {
			if rs.Status != "" && !validStatus(rs.Status) {
				t.Fatalf("invalid status %q", rs.Status)
			}
			if rs.Code != 0 && (rs.Code < 200 || rs.Code > 599) {
				t.Fatalf("code %d", rs.Code)
			}
		}
	})
}

// FuzzVERPDecode: Decode never panics, and whatever it accepts is exactly
// what Encode makes for the same message and recipient (so the check really
// covered both).
func FuzzVERPDecode(f *testing.F) {
	v := testVERP()
	for _, s := range []string{
		v.Encode("0123456789abcdef", 0), v.Encode("ffffffffffffffff", 999999999),
		"<" + v.Encode("00000000000000aa", 3) + ">", strings.ToUpper(v.Encode("0123456789abcdef", 12)),
		"b+0123456789abcdef.1.aaaaaaaa@bounce.penstock.example", "b+@bounce.penstock.example",
		"@", "", "b+0123456789abcdef..@BOUNCE.penstock.example.", "b+x.y.z@other.example",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		id, n, err := v.Decode(addr)
		if err != nil {
			return
		}
		if len(id) != 16 || !isHex(id) || n < 0 {
			t.Fatalf("Decode(%q) = %q, %d", addr, id, n)
		}
		a := strings.TrimSpace(addr)
		a = strings.TrimSuffix(strings.TrimPrefix(a, "<"), ">")
		a = strings.TrimSuffix(a, ".")
		if !strings.EqualFold(a, v.Encode(id, n)) {
			t.Fatalf("Decode accepted %q for %q, %d, which encodes as %q", addr, id, n, v.Encode(id, n))
		}
	})
}
