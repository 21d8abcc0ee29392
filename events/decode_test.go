package events

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func decodeBoth(t *testing.T, line []byte) {
	t.Helper()
	var want, got Record
	werr := json.Unmarshal(line, &want)
	gerr := Decode(line, &got)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("%q: encoding/json err %v, Decode err %v", line, werr, gerr)
	}
	if werr == nil && !reflect.DeepEqual(want, got) {
		t.Fatalf("%q:\nencoding/json %+v\nDecode        %+v", line, want, got)
	}
}

// TestDecodeAsEncodingJSON: what the log's encoder writes, and lines it
// never writes, decode as encoding/json decodes them.
func TestDecodeAsEncodingJSON(t *testing.T) {
	full := &Record{Type: Delivery, Time: time.Date(2026, 12, 7, 5, 0, 0, 123456789, time.UTC), ID: "m1",
		DeliveryID: "d1", Sender: "a@b", Recipient: "c@d", Site: "mx.d", MXHost: "mx.d", MXIP: "127.0.0.1",
		SourceIP: "127.0.0.2", Rule: "default", Code: 250, EnhancedCode: "2.0.0", Text: `ok "quoted" \ <x> & é` + "\t\x01",
		Reason: "r", Class: "c", Attempt: 3, Status: "delivered", Detail: "d\u2028", State: "s", Size: 2048, TLS: true,
		TLSInfo: "TLS1.3", TLSPolicy: "sts enforce", ConnUse: 4}
	for _, r := range []*Record{full, {Type: Reception, Time: time.Unix(0, 0).UTC()}, {Text: "\xff\xfe bad utf-8"}} {
		line := appendRecord(nil, r)
		decodeBoth(t, line)
		var got Record
		if err := Decode(line, &got); err != nil {
			t.Fatal(err)
		}
	}
	for _, line := range []string{
		`{}`, `{"type":"delivery","extra":1}`, `{"code":2.5}`, `{"code":-0}`, `{"code":007}`, `{"size":null}`,
		`{"tls":false}`, `{ "type":"x"}`, `{"type":"x",}`, `{"type":"x"`, `[1]`, `{"time":"not a time"}`,
		`{"code":99999999999999999999}`, `{"text":"a\u00e9\ud83d\ude00"}`, `{"type":"a","type":"b"}`,
		`{"conn_use":07}`, `{"conn_use":-1}`, `{"tls_policy":1}`,
	} {
		decodeBoth(t, []byte(line))
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(appendRecord(nil, &Record{Type: Delivery, Code: 250, Text: "ok", TLS: true, Size: 10}))
	f.Add([]byte(`{"type":"x","text":"a\"b"}`))
	f.Fuzz(func(t *testing.T, line []byte) { decodeBoth(t, line) })
}

func BenchmarkDecode(b *testing.B) {
	line := appendRecord(nil, &Record{Type: Delivery, Time: time.Now().UTC(), ID: "0123456789abcdef", Sender: "bounce@example.com",
		Recipient: "someone@example.net", Site: "mx.example.net", MXHost: "mx.example.net", MXIP: "192.0.2.1",
		SourceIP: "192.0.2.10", Rule: "default", Code: 250, EnhancedCode: "2.0.0", Text: "2.0.0 Ok: queued as ABC",
		Status: "delivered", Size: 2048, TLS: true, TLSInfo: "TLS1.3 TLS_AES_128_GCM_SHA256 verified"})
	b.Run("Decode", func(b *testing.B) {
		for b.Loop() {
			var r Record
			Decode(line, &r)
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			var r Record
			json.Unmarshal(line, &r)
		}
	})
}
