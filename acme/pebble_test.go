package acme_test

import (
	"context"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/berthd/berth/internal/realparts"
	"github.com/berthd/berth/internal/testenv"
)

// The real ACME server of these tests is Pebble (testenv.StartPebble),
// resolving the test's names with testenv.StartDNS, validating HTTP-01
// against the test's nginx.

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	os.Exit(m.Run())
}

// startPebble starts Pebble validating HTTP-01 on px's port.
func startPebble(t *testing.T, dnsAddr string, px *proxy, validity time.Duration) *realparts.Pebble {
	t.Helper()
	_, port, _ := net.SplitHostPort(px.n.Addr)
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return testenv.StartPebble(t, realparts.PebbleOptions{DNS: dnsAddr, HTTPPort: p, Validity: validity})
}

// waitFor polls cond until it holds or the generous bound passes.
func waitFor(t *testing.T, what string, bound time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", bound, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}
