package main

import (
	"fmt"
	"io"
)

func cmdBench(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "penstock bench: not built yet (issue 8)")
	return 2
}
