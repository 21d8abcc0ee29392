package mta_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/penstock-mta/penstock/sim"
)

func TestDebugPerf(t *testing.T) {
	w := newWorld(t)
	p, _ := w.AddProvider(sim.Behavior{Name: "reuse"}, []string{"reuse.test"}, "mx.reuse.test")
	h := newHarness(t, w, nil)
	t0 := time.Now()
	h.sendMany(300, 10, func(i int) string { return fmt.Sprintf("u%d@reuse.test", i) })
	t1 := time.Now()
	waitDelivered(t, p, 300, 30*time.Second)
	t.Logf("inject %s, deliver done after %s; conns %d", t1.Sub(t0), time.Since(t0), p.Stats().Connections)
}
