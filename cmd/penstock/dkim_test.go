package main

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/penstock-mta/penstock/dkim"
	"github.com/penstock-mta/penstock/sim"
)

// testDNS is a loopback DNS server for the test, closed after it.
func testDNS(t *testing.T) *sim.DNSServer {
	t.Helper()
	srv, err := sim.NewDNSServer("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func runCmd(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestDKIMKeygen: the key file is private, never overwritten, and the
// printed record publishes its public key, in zone strings of at most 255
// bytes.
func TestDKIMKeygen(t *testing.T) {
	dir := t.TempDir()
	for _, typ := range []string{"rsa", "ed25519"} {
		file := filepath.Join(dir, typ+".pem")
		code, out, errs := runCmd("dkim", "keygen", "-domain", "Example.com", "-selector", "s1", "-type", typ, "-out", file)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", typ, code, errs)
		}
		st, err := os.Stat(file)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: key file %v mode %v, want 0600", typ, err, st.Mode())
		}
		data, _ := os.ReadFile(file)
		key, _, err := dkim.ParsePrivateKey(data)
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^s1\._domainkey\.example\.com\. IN TXT \( (.*) \)$`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("%s: no zone line in:\n%s", typ, out)
		}
		var joined string
		for _, s := range regexp.MustCompile(`"([^"]*)"`).FindAllStringSubmatch(m[1], -1) {
			if len(s[1]) > 255 {
				t.Errorf("%s: a string of %d bytes", typ, len(s[1]))
			}
			joined += s[1]
		}
		pub, revoked, err := dkim.ParseRecord(joined)
		if err != nil || revoked {
			t.Fatalf("%s: printed record %q: %v", typ, joined, err)
		}
		if !key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
			t.Errorf("%s: printed record holds another key", typ)
		}
		if !strings.Contains(out, "value: v=DKIM1; k="+typ+"; p=") || !strings.Contains(out, `key_file = "`+file+`"`) {
			t.Errorf("%s: output lacks the value or the config:\n%s", typ, out)
		}
		before, _ := os.ReadFile(file)
		code, _, errs = runCmd("dkim", "keygen", "-domain", "example.com", "-selector", "s1", "-type", typ, "-out", file)
		after, _ := os.ReadFile(file)
		if code == 0 || !strings.Contains(errs, "not overwritten") || !bytes.Equal(before, after) {
			t.Errorf("%s: second keygen to the same file: exit %d %q", typ, code, errs)
		}
	}
	for _, args := range [][]string{
		{"-domain", "example.com"},
		{"-domain", "example.com", "-selector", "s 1"},
		{"-domain", "example.com", "-selector", "s1", "-bits", "1024"},
		{"-domain", "example.com", "-selector", "s1", "-type", "dsa"},
	} {
		if code, _, _ := runCmd(append([]string{"dkim", "keygen", "-out", filepath.Join(dir, "x.pem")}, args...)...); code == 0 {
			t.Errorf("keygen %v accepted", args)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x.pem")); err == nil {
		t.Errorf("a refused keygen wrote a file")
	}
}

// TestDKIMCheckCommand: `dkim check` reports each state from the simulated
// DNS, and `check` refuses a weak key.
func TestDKIMCheckCommand(t *testing.T) {
	dir := t.TempDir()
	srv := testDNS(t)
	gen := func(sel string) (string, string) {
		file := filepath.Join(dir, sel+".pem")
		if code, _, errs := runCmd("dkim", "keygen", "-domain", "example.com", "-selector", sel, "-type", "ed25519", "-out", file); code != 0 {
			t.Fatal(errs)
		}
		data, _ := os.ReadFile(file)
		key, _, _ := dkim.ParsePrivateKey(data)
		rec, _ := dkim.Record(key.Public())
		return file, rec
	}
	conf := fmt.Sprintf("[dns]\nnameservers = [%q]\n", srv.Addr())
	recs := map[string]string{}
	for _, sel := range []string{"pub", "miss", "diff", "rev", "junk"} {
		file, rec := gen(sel)
		recs[sel] = rec
		conf += fmt.Sprintf("[[dkim]]\ndomain = \"example.com\"\nselector = %q\nkey_file = %q\n", sel, file)
	}
	srv.SetTXT("pub._domainkey.example.com", recs["pub"])
	srv.SetTXT("diff._domainkey.example.com", recs["pub"])
	srv.SetTXT("rev._domainkey.example.com", "v=DKIM1; k=ed25519; p=")
	srv.SetTXT("junk._domainkey.example.com", "hello")
	cfgFile := filepath.Join(dir, "penstock.toml")
	if err := os.WriteFile(cfgFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCmd("dkim", "check", "-config", cfgFile)
	if code != 1 {
		t.Errorf("exit %d with unpublished keys, want 1; stderr %s", code, errs)
	}
	for sel, state := range map[string]string{"pub": "published", "miss": "missing", "diff": "different", "rev": "revoked", "junk": "unparsable"} {
		if !regexp.MustCompile(`(?m)^` + sel + `\._domainkey\.example\.com\s+ed25519-sha256 256\s+yes\s+` + state + `\b`).MatchString(out) {
			t.Errorf("%s: not reported %s:\n%s", sel, state, out)
		}
	}
	if !strings.Contains(out, "miss._domainkey.example.com. IN TXT ( \""+recs["miss"]+"\" )") || !strings.Contains(out, "4 of 5 key(s) not published") {
		t.Errorf("no record to publish for miss, or no summary:\n%s", out)
	}

	// All published: exit 0.
	for _, sel := range []string{"miss", "diff", "rev", "junk"} {
		srv.SetTXT(sel+"._domainkey.example.com", recs[sel])
	}
	if code, out, _ := runCmd("dkim", "check", "-config", cfgFile); code != 0 || !strings.Contains(out, "all 5 key(s) published and verified") {
		t.Errorf("all published: exit %d\n%s", code, out)
	}
	if code, _, errs := runCmd("check", "-q", "-config", cfgFile); code != 0 || !strings.Contains(errs, "only Ed25519 keys") {
		t.Errorf("check with good keys: exit %d %s", code, errs)
	}

	// A 1024-bit key: `check` refuses it with file and line.
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	weakFile := filepath.Join(dir, "weak.pem")
	os.WriteFile(weakFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(weak)}), 0o600)
	os.WriteFile(cfgFile, []byte(conf+fmt.Sprintf("[[dkim]]\ndomain = \"example.com\"\nselector = \"weak\"\nkey_file = %q\n", weakFile)), 0o600)
	code, _, errs = runCmd("check", "-q", "-config", cfgFile)
	if code != 1 || !strings.Contains(errs, cfgFile+":") || !strings.Contains(errs, "1024-bit RSA key is refused") {
		t.Errorf("check with a 1024-bit key: exit %d %s", code, errs)
	}
	if code, _, _ := runCmd("dkim", "check", "-config", cfgFile); code != 1 {
		t.Errorf("dkim check with a 1024-bit key: exit %d", code)
	}
}
