package campaign

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestVarsRoundTrip(t *testing.T) {
	for _, m := range []map[string]string{
		{"a": ""},
		{"": "empty key"},
		{"first_name": "Ann", "last_name": "Smith", "city": "Zürich"},
		{"k": strings.Repeat("v", 300), "z": "\x00\xff"},
	} {
		b := EncodeVars(m)
		got, err := DecodeVars(b)
		if err != nil || !reflect.DeepEqual(got, m) {
			t.Errorf("%v: decoded %v, %v", m, got, err)
		}
		if len(b) != varsSize(m) {
			t.Errorf("%v: varsSize %d, encoded %d", m, varsSize(m), len(b))
		}
	}
	if EncodeVars(nil) != nil || EncodeVars(map[string]string{}) != nil {
		t.Error("empty vars should encode as nil")
	}
	if m, err := DecodeVars(nil); m != nil || err != nil {
		t.Errorf("DecodeVars(nil) = %v, %v", m, err)
	}
	// Canonical: the same map always gives the same bytes.
	m := map[string]string{"b": "2", "a": "1", "c": "3"}
	if !bytes.Equal(EncodeVars(m), []byte("\x01\x03\x01a\x011\x01b\x012\x01c\x013")) {
		t.Errorf("EncodeVars = %q", EncodeVars(m))
	}
}

func TestVarsSize(t *testing.T) {
	for _, m := range []map[string]string{
		{"first_name": "Ann", "last_name": "Smith", "city": "Paris"},
		{"first_name": "Annabelle", "last_name": "Smith-Jones", "city": "Saint-Étienne"},
	} {
		b := EncodeVars(m)
		t.Logf("%v encodes to %d bytes", m, len(b))
		if len(b) > 80 {
			t.Errorf("typical vars take %d bytes", len(b))
		}
	}
}

func TestDecodeVarsErrors(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
	}{
		{"\x02\x01\x01a\x01b", "unknown format 2"},
		{"\x01", "truncated"},
		{"\x01\x00", "count 0"},
		{"\x01\x05\x01a\x01b", "count 5"},
		{"\x01\x01\x05a\x01b", "truncated"},
		{"\x01\x01\x01a\x05b", "truncated"},
		{"\x01\x01\x01a", "truncated"},
		{"\x01\x02\x00\x00", "count 2 does not fit"},
		{"\x01\x01\x01a\x01bX", "1 trailing bytes"},
		{"\x01\x02\x01b\x00\x01a\x00", "key \"a\" out of order"},
		{"\x01\x02\x01a\x00\x01a\x00", "key \"a\" out of order"},
		{"\x01\x01\x81\x00a\x00", "malformed length"}, // 1 written in two bytes
		{"\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "malformed length"},
		{"\x01\x01\xff\xff\xff\xff\xff\xff\xff\xff\x7f\x00", "truncated"},
	} {
		m, err := DecodeVars([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) || m != nil {
			t.Errorf("DecodeVars(%q) = %v, %v; want error containing %q", tc.in, m, err, tc.want)
		}
	}
}

func FuzzDecodeVars(f *testing.F) {
	f.Add([]byte(nil))
	f.Add(EncodeVars(map[string]string{"first_name": "Ann", "city": "Zürich"}))
	f.Add([]byte("\x01\x02\x01b\x00\x01a\x00"))
	f.Add([]byte("\x01\x01\xff\xff\xff\xff\xff\xff\xff\xff\x7f\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeVars(b)
		if err != nil {
			return
		}
		// Only canonical input is accepted, so it re-encodes to itself.
		if again := EncodeVars(m); !bytes.Equal(again, b) && !(len(b) == 0 && again == nil) {
			t.Fatalf("%q decoded to %v, which encodes to %q", b, m, again)
		}
	})
}

func collect(t *testing.T, read func(func(Recipient) error) error) ([]Recipient, error) {
	t.Helper()
	var got []Recipient
	err := read(func(r Recipient) error {
		got = append(got, r)
		return nil
	})
	return got, err
}

func TestReadCSV(t *testing.T) {
	in := "\xef\xbb\xbfFirst_Name, EMAIL ,city\r\n" +
		"Ann,ann@example.org,\"Paris, France\"\r\n" +
		"\r\n" +
		"\"Bob \"\"B\"\"\", bob+x@example.net ,\"two\nlines\"\r\n" +
		",carol@example.com,\n"
	got, err := collect(t, func(fn func(Recipient) error) error { return ReadCSV(strings.NewReader(in), fn) })
	if err != nil {
		t.Fatal(err)
	}
	want := []Recipient{
		{Address: "ann@example.org", Vars: map[string]string{"First_Name": "Ann", "city": "Paris, France"}},
		{Address: "bob+x@example.net", Vars: map[string]string{"First_Name": `Bob "B"`, "city": "two\nlines"}},
		{Address: "carol@example.com"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestReadCSVErrors(t *testing.T) {
	stop := errors.New("stop")
	for _, tc := range []struct {
		in, want string
	}{
		{"", "recipients csv: empty: want a header row"},
		{"name,city\nAnn,Paris\n", "line 1: no \"email\" or \"address\" column"},
		{"email,Address\n", "line 1: columns 1 and 2 both name the address"},
		{"email,x,x\n", "line 1: columns 2 and 3 are both \"x\""},
		{"email,first name\n", "line 1: column 2: variable name \"first name\""},
		{"email,recipient\n", "line 1: column 2: variable name \"recipient\" is built in"},
		{"email,\n", "line 1: column 2: empty variable name"},
		{"email,n\na@example.org,1\nnot-an-address,2\n", "recipients csv: line 3: address \"not-an-address\""},
		{"email,n\na@example.org,1\nAnn <ann@example.org>,2\n", "line 3: address \"Ann <ann@example.org>\": want a bare address"},
		{"email,n\n,1\n", "line 2: address missing"},
		{"email,n\na@example.org,1\nb@example.org\n", "record on line 3: wrong number of fields"},
		{"email,n\na@example.org,\"x\n", "line 2"},
		{"email,n\na@example.org,1\nb@example.org,stop\n", "recipients csv: line 3: stop"},
		{"email,n\na@example.org," + strings.Repeat("v", MaxVarsSize) + "\n", "line 2: variables take"},
	} {
		err := ReadCSV(strings.NewReader(tc.in), func(r Recipient) error {
			if r.Vars["n"] == "stop" {
				return stop
			}
			return nil
		})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ReadCSV(%.40q) = %v, want error containing %q", tc.in, err, tc.want)
		}
		if strings.HasSuffix(tc.want, "stop") && !errors.Is(err, stop) {
			t.Errorf("error from fn is not wrapped: %v", err)
		}
	}
}

func TestReadNDJSON(t *testing.T) {
	in := "\xef\xbb\xbf{\"address\":\"ann@example.org\",\"vars\":{\"first_name\":\"Ann\",\"empty\":\"\"}}\r\n" +
		"\n   \n" +
		"{\"address\":\" bob@example.net \"}\n" +
		"{\"vars\":{\"x\":\"1\"},\"address\":\"c@example.com\"}"
	got, err := collect(t, func(fn func(Recipient) error) error { return ReadNDJSON(strings.NewReader(in), fn) })
	if err != nil {
		t.Fatal(err)
	}
	want := []Recipient{
		{Address: "ann@example.org", Vars: map[string]string{"first_name": "Ann"}},
		{Address: "bob@example.net"},
		{Address: "c@example.com", Vars: map[string]string{"x": "1"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestReadNDJSONErrors(t *testing.T) {
	ok := `{"address":"a@example.org"}` + "\n"
	for _, tc := range []struct {
		in, want string
	}{
		{ok + `{"address":"b@example.org","name":"x"}`, `recipients ndjson: line 2: json: unknown field "name"`},
		{ok + `{"address":"b@example.org","vars":{"n":1}}`, "line 2: json: cannot unmarshal number"},
		{ok + "\n" + `{"address":"nope"}`, `line 3: address "nope"`},
		{ok + `{"address":"b@example.org"} {}`, "line 2: data after the JSON object"},
		{ok + `["b@example.org"]`, "line 2: want a JSON object"},
		{ok + `null`, "line 2: want a JSON object"},
		{ok + `{"vars":{"a":"b"}}`, "line 2: address missing"},
		{ok + `{"address":"b@example.org","vars":{"message_id":"x"}}`, "line 2: variable name \"message_id\" is built in"},
		{ok + `{"address":"b@example.org","vars":{"a-b":"x"}}`, "line 2: variable name \"a-b\""},
		{ok + `{"address":"b@example.org"`, "line 2: unexpected EOF"},
		{ok + `{"address":"` + strings.Repeat("x", maxNDJSONLine) + `"}`, fmt.Sprintf("line 2: longer than %d bytes", maxNDJSONLine)},
	} {
		err := ReadNDJSON(strings.NewReader(tc.in), func(Recipient) error { return nil })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ReadNDJSON(%.60q) = %v, want error containing %q", tc.in, err, tc.want)
		}
	}
	stop := errors.New("stop")
	err := ReadNDJSON(strings.NewReader(ok+ok), func(Recipient) error { return stop })
	if !errors.Is(err, stop) || !strings.Contains(err.Error(), "line 1: stop") {
		t.Errorf("error from fn: %v", err)
	}
}

func TestCheckAddress(t *testing.T) {
	for _, a := range []string{"a@example.org", "first.last+tag@sub.example.co.uk", "x@[192.0.2.1]", "用户@例子.测试"} {
		if err := CheckAddress(a); err != nil {
			t.Errorf("CheckAddress(%q) = %v", a, err)
		}
	}
	for _, a := range []string{"", "a", "a@", "@b", "a@b@c", "<a@b.example>", "A <a@b.example>", "a@b.example (c)", "a@b.example\r\n", "a b@c.example", strings.Repeat("a", 250) + "@b.example"} {
		if err := CheckAddress(a); err == nil {
			t.Errorf("CheckAddress(%q) accepted", a)
		}
	}
}
