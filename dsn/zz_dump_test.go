package dsn

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestZZDump(t *testing.T) {
	for _, f := range strings.Fields(os.Getenv("DUMP")) {
		b, err := os.ReadFile("testdata/corpus/samples/" + f)
		if err != nil {
			t.Fatal(err)
		}
		r, err := Parse(b)
		fmt.Printf("=== %s err=%v\n", f, err)
		if r != nil {
			fmt.Printf("kind=%v from=%q subj=%q\n", r.Kind, r.From, r.Subject)
			for _, x := range r.Recipients {
				fmt.Printf("  %+v\n", x)
			}
		}
	}
}
