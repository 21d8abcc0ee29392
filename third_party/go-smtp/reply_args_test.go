package smtp

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand"
	"net/textproto"
	"reflect"
	"strings"
	"testing"
)

// joinSplitReply is writeResponse's formatting as of go-smtp v0.25.1 (join
// the texts, split at "\n", one PrintfLine per line), kept as the reference
// the direct formatting must agree with byte for byte.
func joinSplitReply(code int, enhCode EnhancedCode, text ...string) string {
	var b bytes.Buffer
	w := textproto.NewWriter(bufio.NewWriter(&b))
	if enhCode == EnhancedCodeNotSet {
		switch cat := code / 100; cat {
		case 2, 4, 5:
			enhCode = EnhancedCode{cat, 0, 0}
		default:
			enhCode = NoEnhancedCode
		}
	}
	text = strings.Split(strings.Join(text, "\n"), "\n")
	last := len(text) - 1
	for i := 0; i < last; i++ {
		w.PrintfLine("%d-%v", code, text[i])
	}
	if enhCode == NoEnhancedCode {
		w.PrintfLine("%d %v", code, text[last])
	} else {
		w.PrintfLine("%d %v.%v.%v %v", code, enhCode[0], enhCode[1], enhCode[2], text[last])
	}
	return b.String()
}

// replyConn is a Conn whose replies go to a buffer.
func replyConn(b *bytes.Buffer) *Conn {
	return &Conn{server: &Server{}, text: &textproto.Conn{Writer: *textproto.NewWriter(bufio.NewWriter(b))}}
}

func TestWriteResponseMatchesJoinSplit(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	pieces := []string{"", "OK", "a\nb", "\n", "Hello there", "x\n\ny", "PIPELINING", "é"}
	codes := []int{0, 7, 42, 99, 100, 220, 250, 354, 421, 550, 999, 1000, 12345}
	enh := []EnhancedCode{EnhancedCodeNotSet, NoEnhancedCode, {2, 0, 0}, {5, 7, 1}, {4, 10, 100}, {2, 1, 1000}}
	for i := 0; i < 3000; i++ {
		text := make([]string, rng.Intn(4))
		for j := range text {
			text[j] = pieces[rng.Intn(len(pieces))]
		}
		code, e := codes[rng.Intn(len(codes))], enh[rng.Intn(len(enh))]
		var got bytes.Buffer
		replyConn(&got).writeResponse(code, e, text...)
		if want := joinSplitReply(code, e, text...); got.String() != want {
			t.Fatalf("writeResponse(%d, %v, %q) = %q, want %q", code, e, text, got.String(), want)
		}
	}
}

// fieldsSplitArgs is parseArgs as of go-smtp v0.25.1, the reference.
func fieldsSplitArgs(s string) (map[string]string, error) {
	argMap := map[string]string{}
	for _, arg := range strings.Fields(s) {
		m := strings.Split(arg, "=")
		switch len(m) {
		case 2:
			argMap[strings.ToUpper(m[0])] = m[1]
		case 1:
			argMap[strings.ToUpper(m[0])] = ""
		default:
			return nil, fmt.Errorf("failed to parse arg string: %q", arg)
		}
	}
	return argMap, nil
}

func TestParseArgsMatchesFieldsSplit(t *testing.T) {
	for _, s := range []string{"", " ", "SIZE=100", "size=100 body=8BITMIME", "  A  B=  =C D=E=F ", "X=\u00a0Y", "a\u2003b=c", "SMTPUTF8\tREQUIRETLS"} {
		checkParseArgs(t, s)
	}
	rng := rand.New(rand.NewSource(2))
	alphabet := []string{"a", "B", "=", " ", "\t", "\u00a0", "\u2003", "SIZE", "1", "é"}
	for i := 0; i < 5000; i++ {
		var b strings.Builder
		for j := rng.Intn(12); j > 0; j-- {
			b.WriteString(alphabet[rng.Intn(len(alphabet))])
		}
		checkParseArgs(t, b.String())
	}
}

func checkParseArgs(t *testing.T, s string) {
	t.Helper()
	got, gotErr := parseArgs(s)
	want, wantErr := fieldsSplitArgs(s)
	if (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() || !reflect.DeepEqual(got, want) {
		t.Fatalf("parseArgs(%q) = %v, %v; want %v, %v", s, got, gotErr, want, wantErr)
	}
}

func FuzzParseArgs(f *testing.F) {
	f.Add("SIZE=2048 BODY=8BITMIME")
	f.Add(" a=b=c ")
	f.Fuzz(func(t *testing.T, s string) { checkParseArgs(t, s) })
}

func BenchmarkWriteResponse(b *testing.B) {
	var out bytes.Buffer
	c := replyConn(&out)
	b.ReportAllocs()
	for b.Loop() {
		out.Reset()
		c.writeResponse(250, EnhancedCode{2, 0, 0}, "Roger, accepting mail from <bench@sender.bench.test>")
	}
}

func BenchmarkParseArgs(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		parseArgs("SIZE=2232 BODY=8BITMIME")
	}
}

// byteParseMailbox is parser.parseMailbox as of go-smtp v0.25.1 (local
// part and domain copied a byte at a time), the reference.
func byteParseMailbox(p *parser) (string, error) {
	var local strings.Builder
	if p.acceptByte('"') {
		for {
			ch, ok := p.readByte()
			switch ch {
			case '\\':
				ch, ok = p.readByte()
			case '"':
				goto domain
			}
			if !ok {
				return "", fmt.Errorf("in local-part: %v", fmt.Errorf("malformed quoted-string"))
			}
			local.WriteByte(ch)
		}
	} else {
		for {
			ch, ok := p.peekByte()
			if !ok || ch == '@' {
				break
			}
			switch ch {
			case '(', ')', '<', '>', '[', ']', ':', ';', '\\', ',', '"', ' ', '\t':
				return "", fmt.Errorf("in local-part: %v", fmt.Errorf("malformed dot-string"))
			}
			p.readByte()
			local.WriteByte(ch)
		}
	}
domain:
	if local.Len() == 0 {
		return "", fmt.Errorf("local-part is empty")
	}
	if err := p.expectByte('@'); err != nil {
		return "", err
	}
	var sb strings.Builder
	sb.WriteString(local.String())
	sb.WriteByte('@')
	for {
		ch, ok := p.peekByte()
		if !ok || ch == ' ' || ch == '\t' || ch == '>' {
			break
		}
		p.readByte()
		sb.WriteByte(ch)
	}
	if strings.HasSuffix(sb.String(), "@") {
		return "", fmt.Errorf("domain is empty")
	}
	return sb.String(), nil
}

func checkParseMailbox(t *testing.T, s string) {
	t.Helper()
	p, ref := parser{s: s}, parser{s: s}
	got, gotErr := p.parseMailbox()
	want, wantErr := byteParseMailbox(&ref)
	if (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() || got != want ||
		gotErr == nil && p.s != ref.s {
		t.Fatalf("parseMailbox(%q) = %q, %v (rest %q); want %q, %v (rest %q)", s, got, gotErr, p.s, want, wantErr, ref.s)
	}
}

func TestParseMailboxMatchesByteParser(t *testing.T) {
	for _, s := range []string{"", "a@b", "a@b> SIZE=1", "@b", "a@", "a@b@", "\"q@\"@", "\"x\\\"y\"@d t", "a b@c", "a@b\tc", "\"open"} {
		checkParseMailbox(t, s)
	}
	rng := rand.New(rand.NewSource(3))
	alphabet := []string{"a", "@", "\"", "\\", ".", " ", "\t", ">", "<", "(", "é", "x.y"}
	for i := 0; i < 20000; i++ {
		var b strings.Builder
		for j := rng.Intn(10); j > 0; j-- {
			b.WriteString(alphabet[rng.Intn(len(alphabet))])
		}
		checkParseMailbox(t, b.String())
	}
}

func FuzzParseMailbox(f *testing.F) {
	f.Add("bench@sender.bench.test> SIZE=2232")
	f.Add("\"a\\\"b\"@c")
	f.Fuzz(func(t *testing.T, s string) { checkParseMailbox(t, s) })
}

func BenchmarkParseMailbox(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		p := parser{s: "bench@sender.bench.test>"}
		p.parseMailbox()
	}
}
