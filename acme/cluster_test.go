package acme_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/berthd/berth/acme"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/store/memstore"
)

// Two hosts share a store: one, the leader, orders; the CA's challenge
// reaches the other host's responder (the proxy in front of it), which
// answers from the store; both write the certificate to their own
// directory. When the leader stops, the other takes the lead, with the
// budget the first shared, and orders nothing: the shared certificate is
// valid.
func TestClusterOneLeaderOrdersEveryHostServes(t *testing.T) {
	dnsSrv := testenv.StartDNS(t)
	srv := memstore.NewServer()
	stA, stB := srv.Open(), srv.Open()
	t.Cleanup(func() { stA.Close(); stB.Close() })
	respB := acme.NewResponder()
	dir := t.TempDir()
	px := startProxy(t, respB, filepath.Join(dir, "b-certs")) // the CA reaches host B
	pb := startPebble(t, dnsSrv.Addr, px, 0)

	cfgA := baseConfig(t, pb)
	cfgA.Host = "h1"
	cfgB := baseConfig(t, pb)
	cfgB.Host, cfgB.CertsDir = "h2", filepath.Join(dir, "b-certs")
	putInstance(t, stA, "c1", map[string]string{"LETSENCRYPT_HOST": "shared.example.com"}, nil)

	a, stopA := runManager(t, stA, cfgA)
	waitFor(t, "host A to lead", 20*time.Second, func() bool { return a.Status().Leader })
	b, _ := runManager(t, stB, cfgB, acme.WithResponder(respB))

	for _, d := range []string{cfgA.CertsDir, cfgB.CertsDir} {
		crt := filepath.Join(d, "shared.example.com.crt")
		waitFor(t, crt, 60*time.Second, func() bool { return fileSerial(t, crt) != "" })
	}
	if b.Status().Leader {
		t.Fatal("two leaders")
	}
	if n := pb.Orders.Load(); n != 1 {
		t.Fatalf("Pebble saw %d orders from two hosts, want 1", n)
	}

	stopA()
	stA.Close() // host A gone: its lease with it
	waitFor(t, "host B to take the lead", 20*time.Second, func() bool { return b.Status().Leader })
	waitFor(t, "host B to adopt the budget host A shared", 10*time.Second, func() bool {
		for _, o := range b.Status().Orders {
			if o.Scope == "shared.example.com" && o.Orders == 1 {
				return true
			}
		}
		return false
	})
	time.Sleep(time.Second)
	if n := pb.Orders.Load(); n != 1 {
		t.Fatalf("the new leader ordered again (%d orders) though the shared certificate is valid", n)
	}
}
