package acme_test

import (
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/berthd/berth/acme"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/store/memstore"
)

// A host that fails validation (its DNS answers an address nobody listens
// on) backs off: its container crash-loops (its record goes and comes
// back every 100ms) and berth itself restarts every 9 seconds, and still the
// orders Pebble receives stay bounded by the backoff, not by the restarts.
// A valid name of another domain is issued meanwhile, and then, however
// often its container restarts, never ordered again.
func TestPebbleFailedValidationBacksOff(t *testing.T) {
	dnsSrv := testenv.StartDNS(t)
	dnsSrv.Set("fail.example.org", "127.0.0.2") // nothing listens there
	resp := acme.NewResponder()
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	px := startProxy(t, resp, certs)
	pb := startPebble(t, dnsSrv.Addr, px, 0)
	cfg := baseConfig(t, pb)
	cfg.CertsDir = certs
	cfg.RetryMin, cfg.RetryMax = 4*time.Second, time.Minute

	st := memstore.New()
	t.Cleanup(func() { st.Close() })
	ctx := ctxFor(t)
	failEnv := map[string]string{"LETSENCRYPT_HOST": "fail.example.org"}
	okEnv := map[string]string{"VIRTUAL_HOST": "ok.example.net"}
	okLabels := map[string]string{"berth.tls.acme": "true"}
	putInstance(t, st, "bad", failEnv, nil)
	putInstance(t, st, "good", okEnv, okLabels)

	const run = 27 * time.Second
	restarts, flaps, okAtIssue := 0, 0, -1
	start := time.Now()
	var m *acme.Manager
	logs := &testenv.SyncBuffer{}
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(testWriter{t}, logs), nil))
	for time.Since(start) < run {
		var stop func()
		m, stop = runManager(t, st, cfg, acme.WithResponder(resp), acme.WithLogger(logger))
		restarts++
		for end := time.Now().Add(9 * time.Second); time.Now().Before(end); {
			if okAtIssue < 0 && fileSerial(t, filepath.Join(certs, "ok.example.net.crt")) != "" {
				for _, o := range m.Status().Orders {
					if o.Scope == "ok.example.net" {
						okAtIssue = o.Orders
					}
				}
			}
			// The containers crash-loop: stop (records gone), start again.
			for _, id := range []string{"bad", "good"} {
				st.Delete(ctx, "/berth/services/web/h1/"+id)
			}
			time.Sleep(50 * time.Millisecond)
			putInstance(t, st, "bad", failEnv, nil)
			putInstance(t, st, "good", okEnv, okLabels)
			flaps++
			time.Sleep(50 * time.Millisecond)
		}
		stop()
	}
	orders := pb.Orders.Load()
	s := m.Status()
	t.Logf("in %s: %d berth restarts, %d container restarts, %d orders at Pebble; budget %+v", run, restarts, flaps, orders, s.Orders)
	if fileSerial(t, filepath.Join(certs, "ok.example.net.crt")) == "" {
		t.Fatal("ok.example.net (berth.tls.acme=true) has no certificate")
	}
	var okOrders, failOrders int
	for _, o := range s.Orders {
		switch o.Scope {
		case "ok.example.net":
			okOrders = o.Orders
		case "fail.example.org":
			failOrders = o.Orders
			if o.Failures == 0 {
				t.Errorf("fail.example.org's state: %+v", o)
			}
		}
	}
	if okAtIssue < 1 || okOrders != okAtIssue {
		t.Errorf("ok.example.net ordered %d times, %d when its certificate was issued: want no order after (the valid certificate is reused across restarts)", okOrders, okAtIssue)
	}
	// An order takes 2.5 to 7.5s (lego polls the authorization), then the
	// backoff from 4s doubling, ±20%: orders at about 0, 8, 20s; without
	// it, one after the other (about 9 in 27s).
	if failOrders < 2 || failOrders > 4 {
		t.Errorf("fail.example.org ordered %d times in %s, want 2..4", failOrders, run)
	}
	found := false
	for _, d := range s.Domains {
		found = found || d.Scope == "example.org" && d.Failures > 0
	}
	if !found {
		t.Errorf("no backoff of the registered domain example.org: %+v", s.Domains)
	}
	if !strings.Contains(s.Orders[0].LastError+logs.String(), "127.0.0.2") {
		t.Error("the validation failure (127.0.0.2 refused) was never reported")
	}
	if int(orders) != okOrders+failOrders {
		t.Errorf("Pebble saw %d orders, the budget counts %d", orders, okOrders+failOrders)
	}
}

func mustGauge(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name})
			g.Set(mf.GetMetric()[0].GetGauge().GetValue())
			return g
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}

// An ACME directory that does not answer: the manager retries with
// backoff (the account backs off, no order is counted against the names)
// and keeps running; the responder keeps answering.
func TestDirectoryUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	dir := t.TempDir()
	cfg := acme.Config{DirectoryURL: "https://" + addr + "/dir", Storage: filepath.Join(dir, "acme"), CertsDir: filepath.Join(dir, "certs"),
		RetryMin: 200 * time.Millisecond, RetryMax: time.Second}
	st := memstore.New()
	t.Cleanup(func() { st.Close() })
	putInstance(t, st, "c1", map[string]string{"LETSENCRYPT_HOST": "down.example.com"}, nil)
	m, stop := runManager(t, st, cfg)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m.Collectors()...)
	waitFor(t, "three failed attempts", 20*time.Second, func() bool {
		s := m.Status()
		return len(s.Accounts) == 1 && s.Accounts[0].Failures >= 3
	})
	time.Sleep(2 * time.Second)
	s := m.Status()
	stop() // returns: Run ends with its context, whatever the CA does
	a := s.Accounts[0]
	if !strings.Contains(a.LastError, addr) {
		t.Errorf("account error %q does not name the directory", a.LastError)
	}
	// 200ms doubling to 1s: about 0, .2, .6, 1.4, 2.4, 3.4... ; bounded.
	if a.Failures > 12 {
		t.Errorf("%d attempts in a few seconds: no backoff", a.Failures)
	}
	for _, o := range s.Orders {
		if o.Orders != 0 {
			t.Errorf("an order was counted without a CA: %+v", o)
		}
	}
	if got := testutil.ToFloat64(counter(t, reg, "berth_acme_failures_total", "account")); got < 3 {
		t.Errorf("berth_acme_failures_total{scope=account} = %v", got)
	}
}

func counter(t *testing.T, reg *prometheus.Registry, name, label string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, lp := range mt.GetLabel() {
				if lp.GetValue() == label {
					c := prometheus.NewCounter(prometheus.CounterOpts{Name: name})
					c.Add(mt.GetCounter().GetValue())
					return c
				}
			}
		}
	}
	t.Fatalf("no %s{%s}", name, label)
	return nil
}
