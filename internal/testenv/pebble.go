package testenv

import (
	"os"
	"testing"

	"github.com/berthd/berth/internal/realparts"
)

// StartDNS starts a DNS responder (realparts.DNS) until the test ends.
func StartDNS(t testing.TB) *realparts.DNS {
	t.Helper()
	d, err := realparts.StartDNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	return d
}

// StartPebble starts a Pebble ACME server (realparts.Pebble) until the
// test ends; a failed test shows the end of its log.
func StartPebble(t testing.TB, o realparts.PebbleOptions) *realparts.Pebble {
	t.Helper()
	p, err := realparts.StartPebble(t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			b, _ := os.ReadFile(p.Log)
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("pebble log:\n%s", b)
		}
	})
	return p
}
