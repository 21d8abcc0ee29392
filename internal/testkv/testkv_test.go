package testkv

import (
	"errors"
	"testing"

	"github.com/penstock-mta/penstock/spool"
)

func TestKV(t *testing.T) {
	k := New()
	if _, err := k.Get("a"); !errors.Is(err, spool.ErrNotFound) {
		t.Fatalf("Get of a missing key: %v, want spool.ErrNotFound", err)
	}
	buf := []byte("1")
	k.Put("b/2", buf)
	buf[0] = 'x' // the caller's buffer is not what is stored
	k.Put("b/1", []byte("0"))
	k.Put("c", []byte("3"))
	if v, _ := k.Get("b/2"); string(v) != "1" {
		t.Errorf("Get b/2 = %q, want the value as it was put", v)
	}
	var seen []string
	err := k.ForEach("b/", func(key string, _ []byte) error {
		seen = append(seen, key)
		return k.Delete(key) // writing from fn is allowed
	})
	if err != nil || len(seen) != 2 || seen[0] != "b/1" || seen[1] != "b/2" {
		t.Errorf("ForEach b/: %v, %v; want b/1, b/2 in order", seen, err)
	}
	if _, err := k.Get("b/1"); !errors.Is(err, spool.ErrNotFound) {
		t.Errorf("b/1 still there after Delete: %v", err)
	}
	stop := errors.New("stop")
	if err := k.ForEach("", func(string, []byte) error { return stop }); err != stop {
		t.Errorf("ForEach returns %v, want fn's error", err)
	}
}
