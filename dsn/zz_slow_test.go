package dsn

import (
	"os"
	"testing"
)

func BenchmarkZZOne(b *testing.B) {
	m, _ := os.ReadFile("testdata/corpus/samples/" + os.Getenv("ONE"))
	for i := 0; i < b.N; i++ {
		Parse(m)
	}
}
