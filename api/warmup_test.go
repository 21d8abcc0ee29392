package api

import (
	"encoding/json"
	"testing"

	"github.com/penstock-mta/penstock/warmup"
)

type warmFake struct {
	*fake
	st []warmup.Status
}

func (w warmFake) Statuses() []warmup.Status { return w.st }

// TestWarmupRoute: a backend with warm-up schedules lists them.
func TestWarmupRoute(t *testing.T) {
	b := warmFake{fake: newFake(t), st: []warmup.Status{{Source: "ip3", Group: "rule:yahoo", Day: 3, Step: 2, Steps: 4, Sent: 40, Limit: 100}}}
	d := b.deps()
	d.Warmup = b
	r := call(t, Handler(d, "", 1<<20), request{method: "GET", path: "/api/v1/warmup"})
	var got WarmupList
	if r.code != 200 || json.Unmarshal([]byte(r.body), &got) != nil || len(got.Sources) != 1 ||
		got.Sources[0].Source != "ip3" || got.Sources[0].Limit != 100 || got.Sources[0].Sent != 40 {
		t.Fatalf("%d %s", r.code, r.body)
	}
}
