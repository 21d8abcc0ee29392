package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/penstock-mta/penstock/dkim"
)

// readmeBlocks returns the fenced blocks of the given language in the
// repository's README, with the line each starts on.
func readmeBlocks(t *testing.T, lang string) (blocks []string, lines []int) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var cur *strings.Builder
	for i, l := range strings.Split(string(b), "\n") {
		switch {
		case cur == nil && l == "```"+lang:
			cur = &strings.Builder{}
			lines = append(lines, i+1)
		case cur != nil && l == "```":
			blocks = append(blocks, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(l + "\n")
		}
	}
	return blocks, lines
}

// Every TOML example of the README is a configuration that `penstock
// check` accepts as it stands (the yahoo rule example used to be refused
// as a duplicate of a shipped rule name).
func TestReadmeConfigExamples(t *testing.T) {
	blocks, lines := readmeBlocks(t, "toml")
	if len(blocks) < 5 {
		t.Fatalf("found %d toml blocks in the README; the extraction is broken", len(blocks))
	}
	dir := t.TempDir()
	// Key files named by the examples are made here, of the type their
	// selector suggests, so that check loads real keys.
	keyFile := regexp.MustCompile(`key_file = "([^"]+)"`)
	for i, b := range blocks {
		b = keyFile.ReplaceAllStringFunc(b, func(m string) string {
			path := keyFile.FindStringSubmatch(m)[1]
			typ := "rsa"
			if strings.Contains(path, "ed") {
				typ = "ed25519"
			}
			_, pemBytes, err := dkim.GenerateKey(typ, 2048)
			if err != nil {
				t.Fatal(err)
			}
			local := filepath.Join(dir, filepath.Base(path))
			if err := os.WriteFile(local, pemBytes, 0o600); err != nil {
				t.Fatal(err)
			}
			return `key_file = "` + local + `"`
		})
		f := filepath.Join(dir, "example.toml")
		if err := os.WriteFile(f, []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
		var out, errb bytes.Buffer
		if rc := run([]string{"check", "-q", "-config", f}, &out, &errb); rc != 0 {
			t.Errorf("README line %d: penstock check refuses the example: %s\n%s", lines[i], errb.String(), b)
		}
	}
}

// The error format the README documents is the one check prints.
func TestReadmeErrorFormat(t *testing.T) {
	blocks, _ := readmeBlocks(t, "text")
	re := regexp.MustCompile(`^penstock\.toml:(\d+): `)
	var doc string
	for _, b := range blocks {
		if re.MatchString(b) {
			doc = strings.TrimSpace(b)
		}
	}
	if doc == "" {
		t.Fatal("the README documents no configuration error")
	}
	t.Chdir(t.TempDir())
	if err := os.WriteFile("penstock.toml", []byte("[[mx_rule]]\nname = \"x\"\nmx = \"*.x.com\"\nscope = \"site\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if rc := run([]string{"check", "-config", "penstock.toml"}, &out, &errb); rc != 1 {
		t.Fatalf("rc %d", rc)
	}
	if got := strings.TrimSpace(errb.String()); got != doc {
		t.Fatalf("check says\n  %s\nthe README documents\n  %s", got, doc)
	}
}

// An operator's rule named like a shipped one replaces it, in place of
// being refused as a duplicate.
func TestRuleReplacesShipped(t *testing.T) {
	f := filepath.Join(t.TempDir(), "p.toml")
	if err := os.WriteFile(f, []byte("[[mx_rule]]\nname = \"yahoo\"\nmx = \"*.yahoodns.net\"\nmax_connections = 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if rc := run([]string{"check", "-config", f}, &out, &errb); rc != 0 {
		t.Fatalf("rc %d: %s", rc, errb.String())
	}
	var yahoo []string
	for _, l := range strings.Split(out.String(), "\n") {
		if f := strings.Fields(l); len(f) > 2 && f[1] == "yahoo" {
			yahoo = append(yahoo, l)
		}
	}
	if len(yahoo) != 1 || !strings.Contains(yahoo[0], "config (replaces shipped)") || !strings.Contains(yahoo[0], " 3 ") {
		t.Fatalf("yahoo rules listed: %q", yahoo)
	}
}
