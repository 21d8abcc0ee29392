package message

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/spool"
)

// recorder is a test stage that logs its runs and what it saw.
type recorder struct {
	name  string
	scope Scope
	log   *[]string
	mu    *sync.Mutex
	runs  atomic.Int64
	seen  [][]byte
	apply func(s *Send) error
}

func (r *recorder) Name() string               { return r.name }
func (r *recorder) Scope(*spool.Message) Scope { return r.scope }
func (r *recorder) Apply(_ context.Context, s *Send) error {
	r.runs.Add(1)
	r.mu.Lock()
	*r.log = append(*r.log, r.name)
	r.seen = append(r.seen, s.Data)
	r.mu.Unlock()
	if r.apply != nil {
		return r.apply(s)
	}
	return nil
}

func relayed(id spool.ID, n int) *spool.Message {
	m := &spool.Message{ID: id, Sender: "a@src.example"}
	for i := 0; i < n; i++ {
		m.Recipients = append(m.Recipients, spool.Recipient{Addr: fmt.Sprintf("r%d@d%d.example", i, i)})
	}
	return m
}

// TestPipelineOrder: render, load, header fixes, sign, in that order; the
// signer sees the canonical message and its header/body split; a render
// that produced the message keeps load from reading the spool.
func TestPipelineOrder(t *testing.T) {
	var log []string
	var mu sync.Mutex
	render := &recorder{name: "render", scope: PerSend, log: &log, mu: &mu, apply: func(s *Send) error {
		if s.Msg.DeliveryID != "" {
			s.Data = []byte("Subject: rendered\nX: y\n\nbody\n")
		}
		return nil
	}}
	var header, body []byte
	sign := &recorder{name: "sign", log: &log, mu: &mu, apply: func(s *Send) error {
		header, body = s.Header(), s.Body()
		s.Prepend([]byte("DKIM-Signature: v=1\r\n"))
		s.Note("dkim", "signed by d=src.example s=sel")
		return nil
	}}
	loads := 0
	p := New(Options{Render: render, Sign: sign, Load: func(spool.ID) ([]byte, error) {
		loads++
		mu.Lock()
		log = append(log, "load")
		mu.Unlock()
		return []byte("Subject: stored\r\n\r\nhello\r\n"), nil
	}})

	s, err := p.Build(context.Background(), relayed(1, 1), []int{0}, "a@src.example")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(log, ","); got != "render,load,sign" {
		t.Fatalf("stages ran %s, want render,load,sign", got)
	}
	if want := "DKIM-Signature: v=1\r\nSubject: stored\r\n\r\nhello\r\n"; string(s.Data) != want {
		t.Fatalf("Data = %q, want %q", s.Data, want)
	}
	if string(header) != "Subject: stored\r\n" || string(body) != "hello\r\n" {
		t.Fatalf("signer saw header %q body %q", header, body)
	}
	if string(s.Header()) != "DKIM-Signature: v=1\r\nSubject: stored\r\n" || string(s.Body()) != "hello\r\n" {
		t.Fatalf("after Prepend: header %q body %q", s.Header(), s.Body())
	}
	if s.Results() != "dkim: signed by d=src.example s=sel" || s.From != "a@src.example" {
		t.Fatalf("Results %q From %q", s.Results(), s.From)
	}

	// A campaign message: render makes it, the spool is not read, and the
	// fixes make the rendered LF lines CRLF before the signer sees them.
	log = nil
	cm := relayed(2, 1)
	cm.DeliveryID = "d1"
	if _, err = p.Build(context.Background(), cm, []int{0}, "a@src.example"); err != nil {
		t.Fatal(err)
	}
	if loads != 1 {
		t.Fatalf("load read the spool for a rendered message (%d reads)", loads)
	}
	if string(header) != "Subject: rendered\r\nX: y\r\n" || string(body) != "body\r\n" {
		t.Fatalf("signer saw header %q body %q", header, body)
	}
}

// TestOncePerMessage: the per-message stages of a message with recipients
// at several domains run once for all its transactions; a per-send stage
// runs for each; Forget drops the entry; single-recipient messages are not
// cached.
func TestOncePerMessage(t *testing.T) {
	var log []string
	var mu sync.Mutex
	sign := &recorder{name: "sign", log: &log, mu: &mu, apply: func(s *Send) error {
		s.Prepend([]byte("Sig: 1\r\n"))
		s.Note("sign", "ok")
		return nil
	}}
	var loads atomic.Int64
	load := func(spool.ID) ([]byte, error) {
		loads.Add(1)
		return []byte("Subject: x\n\nhello\n"), nil
	}
	p := New(Options{Sign: sign, Load: load})
	m := relayed(7, 50)
	var wg sync.WaitGroup
	outs := make([]*Send, len(m.Recipients))
	for i := range m.Recipients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := p.Build(context.Background(), m, []int{i}, "a@src.example")
			if err != nil {
				t.Error(err)
				return
			}
			outs[i] = s
		}()
	}
	wg.Wait()
	// Concurrent first builds may each run the stages before one stores
	// the result; sequential ones never do. Bound the concurrent case and
	// check the sequential one exactly below.
	if n := loads.Load(); n < 1 || n > 4 {
		t.Fatalf("50 transactions of one message loaded it %d times", n)
	}
	for i, s := range outs {
		if s == nil || string(s.Data) != "Sig: 1\r\nSubject: x\r\n\r\nhello\r\n" || s.Results() != "sign: ok" {
			t.Fatalf("transaction %d got %+v", i, s)
		}
	}

	p = New(Options{Sign: sign, Load: load})
	loads.Store(0)
	sign.runs.Store(0)
	for i := 0; i < 10; i++ {
		if _, err := p.Build(context.Background(), m, []int{i}, ""); err != nil {
			t.Fatal(err)
		}
	}
	if loads.Load() != 1 || sign.runs.Load() != 1 {
		t.Fatalf("10 sequential transactions: %d loads, %d signatures; want 1 and 1", loads.Load(), sign.runs.Load())
	}
	if st := p.Stats(); st.CacheHits != 9 || st.StageRuns != 3 {
		t.Fatalf("stats %+v, want 9 hits and 3 stage runs (load, fix, sign)", st)
	}
	p.Forget(m.ID)
	if _, err := p.Build(context.Background(), m, []int{0}, ""); err != nil {
		t.Fatal(err)
	}
	if loads.Load() != 2 {
		t.Fatalf("after Forget the message was not read again (%d loads)", loads.Load())
	}

	// A per-send stage first: nothing can be shared.
	perSend := &recorder{name: "render", scope: PerSend, log: &log, mu: &mu}
	p = New(Options{Render: perSend, Sign: sign, Load: load})
	loads.Store(0)
	for i := 0; i < 3; i++ {
		if _, err := p.Build(context.Background(), m, []int{i}, ""); err != nil {
			t.Fatal(err)
		}
	}
	if loads.Load() != 3 || perSend.runs.Load() != 3 {
		t.Fatalf("per-send render: %d loads, %d renders; want 3 and 3", loads.Load(), perSend.runs.Load())
	}

	// One recipient: every attempt builds afresh, nothing is kept.
	p = New(Options{Load: load})
	loads.Store(0)
	one := relayed(8, 1)
	for i := 0; i < 3; i++ {
		if _, err := p.Build(context.Background(), one, []int{0}, ""); err != nil {
			t.Fatal(err)
		}
	}
	if loads.Load() != 3 || p.cache.len() != 0 {
		t.Fatalf("single recipient: %d loads, %d cached", loads.Load(), p.cache.len())
	}
}

// TestCacheBounds: the cache holds at most its entries and bytes, dropping
// the least recently used.
func TestCacheBounds(t *testing.T) {
	clock := time.Unix(0, 0)
	now := func() time.Time { return clock }
	c := newCache(3, 1000, time.Hour, now)
	for id := spool.ID(1); id <= 5; id++ {
		c.put(id, entry{data: make([]byte, 100)})
		if id == 3 {
			c.get(1) // 1 is now more recent than 2
		}
	}
	if c.len() != 3 {
		t.Fatalf("%d entries, bound 3", c.len())
	}
	for id, want := range map[spool.ID]bool{1: true, 2: false, 3: false, 4: true, 5: true} {
		if _, ok := c.get(id); ok != want {
			t.Errorf("entry %d cached = %v, want %v", id, ok, want)
		}
	}
	c = newCache(100, 1000, time.Hour, now)
	for id := spool.ID(1); id <= 10; id++ {
		c.put(id, entry{data: make([]byte, 200)})
	}
	if c.bytes > 1000 || c.len() != 5 {
		t.Fatalf("%d bytes in %d entries, bound 1000 bytes", c.bytes, c.len())
	}
	c.put(99, entry{data: make([]byte, 600)}) // over a quarter of the bound
	if _, ok := c.get(99); ok {
		t.Fatal("an outsized message was cached")
	}
	// An entry older than the bound is built again (a retry hours later
	// gets a fresh signature).
	clock = clock.Add(time.Hour + time.Second)
	if _, ok := c.get(10); ok || c.len() != 4 {
		t.Fatalf("an entry past its age was reused (%d left)", c.len())
	}
}

// TestErrors: a stage error is temporary unless the stage marked it
// permanent; the error names the stage and the local cause.
func TestErrors(t *testing.T) {
	cause := errors.New(`Reply-To: "not an address": mail: missing @ in addr-spec`)
	for _, tc := range []struct {
		name string
		err  error
		perm bool
	}{
		{"temporary", cause, false},
		{"permanent", Permanent(cause), true},
		{"wrapped permanent", fmt.Errorf("render: %w", Permanent(cause)), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log []string
			var mu sync.Mutex
			fail := &recorder{name: "render", scope: PerSend, log: &log, mu: &mu, apply: func(*Send) error { return tc.err }}
			after := &recorder{name: "sign", log: &log, mu: &mu}
			p := New(Options{Render: fail, Sign: after, Load: func(spool.ID) ([]byte, error) { return []byte("x: y\r\n\r\n"), nil }})
			s, err := p.Build(context.Background(), relayed(1, 1), []int{0}, "")
			var e *Error
			if s != nil || !errors.As(err, &e) {
				t.Fatalf("Build = %v, %v; want an *Error", s, err)
			}
			if e.Stage != "render" || e.Permanent != tc.perm || IsPermanent(err) != tc.perm || !errors.Is(err, cause) {
				t.Fatalf("error %+v: stage %q permanent %v", e, e.Stage, e.Permanent)
			}
			if !strings.HasPrefix(err.Error(), "message could not be built: ") || !strings.Contains(err.Error(), "Reply-To: ") {
				t.Fatalf("error text %q", err)
			}
			if after.runs.Load() != 0 {
				t.Fatal("a stage ran after a failed one")
			}
		})
	}
	// The spool failing to give the message is temporary: it never bounces.
	p := New(Options{Load: func(spool.ID) ([]byte, error) { return nil, fmt.Errorf("body 1: %w", spool.ErrNotFound) }})
	if _, err := p.Build(context.Background(), relayed(1, 2), []int{0}, ""); err == nil || IsPermanent(err) {
		t.Fatalf("load error: %v, permanent %v", err, IsPermanent(err))
	}
	// A campaign message without a render stage configured: temporary.
	cm := relayed(2, 1)
	cm.DeliveryID = "d1"
	if _, err := New(Options{}).Build(context.Background(), cm, []int{0}, ""); err == nil || IsPermanent(err) {
		t.Fatalf("campaign without render: %v", err)
	}
}

// TestFixHeaders: line ends, the final CRLF and the empty line after the
// header; canonical input is passed through without a copy.
func TestFixHeaders(t *testing.T) {
	for _, tc := range []struct{ in, want, header string }{
		{"A: 1\r\n\r\nbody\r\n", "A: 1\r\n\r\nbody\r\n", "A: 1\r\n"},
		{"A: 1\n\nbody\n", "A: 1\r\n\r\nbody\r\n", "A: 1\r\n"},
		{"A: 1\r\rbo\rdy", "A: 1\r\n\r\nbo\r\ndy\r\n", "A: 1\r\n"},
		{"A: 1\r\n folded\r\nB : 2\r\n\r\n.dot\r\n", "A: 1\r\n folded\r\nB : 2\r\n\r\n.dot\r\n", "A: 1\r\n folded\r\nB : 2\r\n"},
		{"A: 1\r\nnot a field\r\nmore\r\n", "A: 1\r\n\r\nnot a field\r\nmore\r\n", "A: 1\r\n"},
		{"A: 1\r\nB: 2", "A: 1\r\nB: 2\r\n\r\n", "A: 1\r\nB: 2\r\n"},
		{"just text\n", "\r\njust text\r\n", ""},
		{"\r\nbody only\r\n", "\r\nbody only\r\n", ""},
		{"", "\r\n", ""},
	} {
		s := &Send{Data: []byte(tc.in)}
		if err := (FixHeaders{}).Apply(context.Background(), s); err != nil {
			t.Fatal(err)
		}
		if string(s.Data) != tc.want || string(s.Header()) != tc.header {
			t.Errorf("%q: got %q header %q, want %q header %q", tc.in, s.Data, s.Header(), tc.want, tc.header)
		}
		if !isCanonical(s.Data) {
			t.Errorf("%q: output %q not canonical", tc.in, s.Data)
		}
	}
	in := []byte("A: 1\r\n\r\nbody\r\n")
	s := &Send{Data: in}
	(FixHeaders{}).Apply(context.Background(), s)
	if &s.Data[0] != &in[0] {
		t.Error("a canonical message was copied")
	}
}

// TestPrependDoesNotWriteShared: a stage after the cache point adding a
// field must not write into the cached bytes other sends share.
func TestPrependDoesNotWriteShared(t *testing.T) {
	shared := make([]byte, 0, 64)
	shared = append(shared, "A: 1\r\n\r\nb\r\n"...)
	s := &Send{Data: shared[:len(shared):cap(shared)], HeaderLen: 6}
	s.Prepend([]byte("S: 1\r\n"))
	if string(shared) != "A: 1\r\n\r\nb\r\n" || string(s.Data) != "S: 1\r\nA: 1\r\n\r\nb\r\n" {
		t.Fatalf("shared %q, data %q", shared, s.Data)
	}
	if !bytes.Equal(s.Body(), []byte("b\r\n")) {
		t.Fatalf("body %q", s.Body())
	}
}

// FuzzCanonical: the output is canonical, keeps every line, and a
// canonical input comes back unchanged.
func FuzzCanonical(f *testing.F) {
	for _, s := range []string{"", "a", "a\r\n", "a\n", "a\r", "\r\r\n\n", "x\r\ny\rz\n", ".\r\n..\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out := Canonical(in)
		if !isCanonical(out) {
			t.Fatalf("Canonical(%q) = %q, not canonical", in, out)
		}
		if isCanonical(in) && !bytes.Equal(in, out) {
			t.Fatalf("canonical %q changed to %q", in, out)
		}
		want := strings.ReplaceAll(strings.ReplaceAll(string(in), "\r\n", "\n"), "\r", "\n")
		if want != "" && !strings.HasSuffix(want, "\n") {
			want += "\n"
		}
		if got := strings.ReplaceAll(string(out), "\r\n", "\n"); got != want {
			t.Fatalf("Canonical(%q) = %q: lines changed", in, out)
		}
	})
}

// TestSignStage: the signing slot takes a plain signing function; it signs
// the canonical message, its field goes first, its note into Results, and
// it runs once for all the transactions of a relayed message.
func TestSignStage(t *testing.T) {
	var signed [][]byte
	var mu sync.Mutex
	sign := func(msg []byte) ([]byte, string, error) {
		mu.Lock()
		signed = append(signed, msg)
		mu.Unlock()
		return []byte("DKIM-Signature: v=1; d=src.example; s=sel; b=x\r\n"), "d=src.example s=sel", nil
	}
	p := New(Options{Sign: SignStage("dkim", sign), Load: func(spool.ID) ([]byte, error) { return []byte("A: 1\n\nbody\n"), nil }})
	m := relayed(3, 3)
	for i := range m.Recipients {
		s, err := p.Build(context.Background(), m, []int{i}, "")
		if err != nil {
			t.Fatal(err)
		}
		if string(s.Data) != "DKIM-Signature: v=1; d=src.example; s=sel; b=x\r\nA: 1\r\n\r\nbody\r\n" || s.Results() != "dkim: d=src.example s=sel" {
			t.Fatalf("transaction %d: %q, results %q", i, s.Data, s.Results())
		}
	}
	if len(signed) != 1 || string(signed[0]) != "A: 1\r\n\r\nbody\r\n" {
		t.Fatalf("signed %q", signed)
	}
	bad := New(Options{Sign: SignStage("dkim", func([]byte) ([]byte, string, error) { return []byte("no field"), "", nil }),
		Load: func(spool.ID) ([]byte, error) { return []byte("A: 1\r\n\r\n"), nil }})
	if _, err := bad.Build(context.Background(), relayed(4, 1), []int{0}, ""); err == nil {
		t.Fatal("a signer's malformed field was prepended")
	}
}
