package campaign

import (
	"bytes"
	"testing"
)

// BenchmarkRender renders the 2 KB text+HTML test template with five
// variables per recipient, as a sender would at send time.
func BenchmarkRender(b *testing.B) {
	tp := testTemplate()
	b.Logf("template: text %d + html %d bytes", len(tp.Text), len(tp.HTML))
	run := func(b *testing.B, tp Template, decode bool) {
		c := mustCompile(b, tp)
		vars := testVars()
		enc := EncodeVars(vars)
		m := testMeta(1)
		var buf bytes.Buffer
		b.ReportAllocs()
		b.ResetTimer()
		cpu0 := processCPU()
		for i := 0; i < b.N; i++ {
			if decode {
				var err error
				if vars, err = DecodeVars(enc); err != nil {
					b.Fatal(err)
				}
			}
			buf.Reset()
			if err := c.Render(&buf, vars, m); err != nil {
				b.Fatal(err)
			}
		}
		cpu := processCPU() - cpu0
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "recipients/s")
		if cpu0 >= 0 && cpu > 0 {
			// With -cpu 1 this is recipients per second of one busy core.
			b.ReportMetric(float64(b.N)/cpu.Seconds(), "recipients/cpu-s")
		}
		b.SetBytes(int64(buf.Len()))
	}
	b.Run("fast", func(b *testing.B) { run(b, tp, false) })
	b.Run("fast+decodevars", func(b *testing.B) { run(b, tp, true) })
	// Variables in the header only: the body is rendered once per template.
	b.Run("fixedbody", func(b *testing.B) { run(b, fixedBodyTemplate(), false) })
	// The same template forced through text/template and html/template.
	slow := tp
	for _, p := range []*string{&slow.Subject, &slow.Text, &slow.HTML, &slow.ListUnsubscribe, &slow.FeedbackID} {
		*p = "{{if true}}{{end}}" + *p
	}
	b.Run("template", func(b *testing.B) { run(b, slow, false) })
}

func BenchmarkDecodeVars(b *testing.B) {
	enc := EncodeVars(testVars())
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := DecodeVars(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheck is the acceptance-time check of one recipient's variables
// (headers only: what a value can make invalid).
func BenchmarkCheck(b *testing.B) {
	c := mustCompile(b, testTemplate())
	vars, m := testVars(), testMeta(1)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := c.Check(vars, m); err != nil {
			b.Fatal(err)
		}
	}
}
