package eventsout

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/penstock-mta/penstock/events"
)

// A record longer than one read is still read, not stuck on for ever.
func TestReadLongLine(t *testing.T) {
	dir := t.TempDir()
	long := `{"type":"Bounce","text":"` + strings.Repeat("x", 3*readChunk+10) + `"}` + "\n"
	os.WriteFile(filepath.Join(dir, "delivery.log"), []byte(`{"type":"Delivery"}`+"\n"+long+`{"type":"Expiration"}`+"\n"), 0o644)
	tl := NewTail(dir)
	tl.Refresh()
	var types []string
	c := Cursor{}
	for i := 0; i < 10; i++ {
		evs, next, _, _, err := tl.Read(c, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			types = append(types, e.Type)
		}
		c = next
	}
	if strings.Join(types, ",") != "Delivery,Bounce,Expiration" {
		t.Fatalf("read %v", types)
	}
	if lag, _ := tl.Lag(c); lag != 0 {
		t.Errorf("lag %d at the end", lag)
	}
}

// Lines that are not records are passed over and counted; the event id is
// the file key and offset, and the JSON carries it first.
func TestReadBadLinesAndIDs(t *testing.T) {
	dir := t.TempDir()
	head := "{\"type\":\"Delivery\",\"recipient\":\"a@x\"}\nnot json\n{}\n"
	full := head + "{\"type\":\"Bounce\"}\n"
	os.WriteFile(filepath.Join(dir, "delivery.log"), []byte(full+"{\"type\":\"Bou"), 0o644)
	tl := NewTail(dir)
	tl.Refresh()
	evs, next, _, bad, err := tl.Read(Cursor{}, 100)
	if err != nil || len(evs) != 2 || bad != 2 {
		t.Fatalf("evs %d bad %d err %v", len(evs), bad, err)
	}
	fh, err := os.Open(filepath.Join(dir, "delivery.log"))
	if err != nil {
		t.Fatal(err)
	}
	key := fileKey(fh)
	fh.Close()
	if evs[0].ID != key+"-0" || evs[1].ID != key+"-"+strconv.Itoa(len(head)) {
		t.Errorf("ids %s %s (key %s)", evs[0].ID, evs[1].ID, key)
	}
	if want := `{"event_id":"` + key + `-0","type":"Delivery","recipient":"a@x"}`; string(evs[0].JSON) != want {
		t.Errorf("json %s, want %s", evs[0].JSON, want)
	}
	if next.Offset != int64(len(full)) || next.Line != 4 {
		t.Errorf("next %+v: the partial last line must wait", next)
	}
}

// Two records torn into one line by a failed write are not sent: the fast
// path leaves them to the full decode, which refuses them.
func TestReadTornLine(t *testing.T) {
	for _, line := range []string{
		`{"type":"Delivery","recipient":"a@x{"type":"Bounce","recipient":"b@x"}`,
		`{"type":"Deliv{"type":"Bounce"}`,
	} {
		if _, ok := makeEvent("k-0", []byte(line)); ok {
			t.Errorf("torn line accepted: %s", line)
		}
	}
	for _, line := range []string{`{"type":"Bounce","text":"say {\"type\":\"x\"}"}`, `{"time":"t","type":"Bounce"}`} {
		if ev, ok := makeEvent("k-0", []byte(line)); !ok || ev.Type != "Bounce" {
			t.Errorf("record refused: %s", line)
		}
	}
}

// TestEventRecord: an event's record decodes to what its delivery-log line
// says, the event_id the outputs add left out.
func TestEventRecord(t *testing.T) {
	for _, line := range []string{
		`{"type":"delivery","time":"2026-12-07T05:00:00Z","recipient":"a@b","code":250,"text":"ok \"x\"","tls":true}`,
		`{}`,
		`{"type":"bounce","extra":{"nested":1}}`,
	} {
		ev, ok := makeEvent("f-1", []byte(line))
		if !ok {
			if line == `{}` {
				continue // no type: not an event
			}
			t.Fatalf("%s: not an event", line)
		}
		var got, want events.Record
		if err := ev.record(&got); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if err := json.Unmarshal([]byte(line), &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", line, got, want)
		}
	}
}

// Batches that end and start inside a read chunk, of sizes small and
// large, return every record once, in order, each with the id of its
// offset and its own bytes (the read buffer is reused between reads).
func TestReadAcrossChunks(t *testing.T) {
	dir := t.TempDir()
	var log strings.Builder
	var offsets []int
	for i := range 3000 { // about 4 chunks, lines of varying length
		offsets = append(offsets, log.Len())
		log.WriteString(`{"type":"Delivery","id":"m` + strconv.Itoa(i) + `","text":"` + strings.Repeat("y", i%97) + `"}` + "\n")
	}
	os.WriteFile(filepath.Join(dir, "delivery.log"), []byte(log.String()), 0o644)
	tl := NewTail(dir)
	tl.Refresh()
	for _, batch := range []int{7, 100, 1000, 5000} {
		var all []Event
		c := Cursor{}
		for i := 0; i < 1000; i++ {
			evs, next, _, bad, err := tl.Read(c, batch)
			if err != nil || bad != 0 || len(evs) > batch {
				t.Fatalf("batch %d: %d events, bad %d, err %v", batch, len(evs), bad, err)
			}
			all = append(all, evs...)
			if next == c {
				break
			}
			c = next
		}
		if len(all) != len(offsets) || c.Offset != int64(log.Len()) || c.Line != int64(len(offsets)) {
			t.Fatalf("batch %d: %d events of %d, cursor %+v", batch, len(all), len(offsets), c)
		}
		for i, ev := range all {
			var r events.Record
			if !strings.HasSuffix(ev.ID, "-"+strconv.Itoa(offsets[i])) || ev.record(&r) != nil || r.ID != "m"+strconv.Itoa(i) {
				t.Fatalf("batch %d: event %d is %s %s", batch, i, ev.ID, ev.JSON)
			}
		}
	}
}
