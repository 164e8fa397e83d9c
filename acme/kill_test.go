package acme_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthd/berth/acme"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/store/memstore"
)

// The child process of TestKill9DuringOrder: a Manager ordering for one
// container, killed by the test in the middle of the order.
const childEnv = "BERTH_ACME_TEST_CHILD"

func runChild() int {
	var cfg acme.Config
	if err := json.Unmarshal([]byte(os.Getenv(childEnv)), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	st := memstore.New()
	in := records.Instance{ID: "c1", Name: "ctr-c1", Service: "web", Host: "h1", IP: "127.0.0.1", Port: 80,
		Env: map[string]string{"LETSENCRYPT_HOST": os.Getenv(childEnv + "_HOST")}}
	b, _ := json.Marshal(in)
	if _, err := st.Put(context.Background(), records.ServiceKey("", "web", "h1", "c1"), b); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	m, err := acme.New(st, cfg, acme.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, nil))))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	m.Run(context.Background()) // until killed
	return 0
}

// A kill -9 of the process while its order is at the CA leaves the
// storage consistent (every file whole and parsing, the account kept),
// and the next run completes the certificate, counting the interrupted
// order in the budget.
func TestKill9DuringOrder(t *testing.T) {
	dnsSrv := testenv.StartDNS(t)
	resp := acme.NewResponder()
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	px := startProxy(t, resp, certs)
	pb := startPebble(t, dnsSrv.Addr, px, 0)
	cfg := baseConfig(t, pb)
	cfg.CertsDir = certs
	cfg.RetryMin = 500 * time.Millisecond

	b, _ := json.Marshal(cfg)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command(exe, "-test.run=^$")
	child.Env = append(os.Environ(), childEnv+"="+string(b), childEnv+"_HOST=kill.example.com")
	child.Stderr = testWriter{t}
	child.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	killed := make(chan struct{})
	kill := func() {
		// In the middle of the order: the new-order request has reached
		// the proxy and not yet Pebble.
		_ = child.Process.Signal(syscall.SIGKILL)
		select {
		case <-killed:
		default:
			close(killed)
		}
	}
	pb.OnOrder.Store(&kill)
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Process.Kill() })
	select {
	case <-killed:
	case <-time.After(60 * time.Second):
		t.Fatal("the child never ordered")
	}
	_ = child.Wait()
	pb.OnOrder.Store(nil)
	if st := child.ProcessState; st == nil || st.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child not killed by SIGKILL: %v", child.ProcessState)
	}

	// Consistent: every stored file parses; the account has its key and
	// registration; the order is marked in flight.
	var acct struct {
		Key          string          `json:"key"`
		Registration json.RawMessage `json:"registration"`
	}
	readJSON(t, filepath.Join(cfg.Storage, "accounts", "ops@example.com.json"), &acct)
	if acct.Key == "" || len(acct.Registration) == 0 {
		t.Fatalf("account after the kill: %+v", acct)
	}
	var budget struct {
		Orders map[string]struct {
			Orders   int       `json:"orders"`
			InFlight time.Time `json:"in_flight"`
		} `json:"orders"`
	}
	readJSON(t, filepath.Join(cfg.Storage, "budget.json"), &budget)
	if o := budget.Orders["kill.example.com"]; o.Orders != 1 || o.InFlight.IsZero() {
		t.Fatalf("budget after the kill: %+v", budget)
	}
	regBefore := string(acct.Registration)

	// The next run completes it, with the same account.
	st := memstore.New()
	t.Cleanup(func() { st.Close() })
	putInstance(t, st, "c1", map[string]string{"LETSENCRYPT_HOST": "kill.example.com"}, nil)
	m, _ := runManager(t, st, cfg, acme.WithResponder(resp))
	crt := filepath.Join(certs, "kill.example.com.crt")
	waitFor(t, "the certificate after the restart", 60*time.Second, func() bool { return fileSerial(t, crt) != "" })
	// Every stored file is whole, and no temporary file a kill could leave
	// is left.
	filepath.WalkDir(cfg.Storage, func(p string, e os.DirEntry, err error) error {
		switch {
		case err != nil:
			t.Error(err)
		case strings.HasPrefix(e.Name(), "."):
			t.Errorf("temporary file left: %s", p)
		case !e.IsDir():
			var v any
			readJSON(t, p, &v)
			if fi, _ := e.Info(); fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: mode %v, want 0600", p, fi.Mode().Perm())
			}
		}
		return nil
	})
	readJSON(t, filepath.Join(cfg.Storage, "accounts", "ops@example.com.json"), &acct)
	if string(acct.Registration) != regBefore {
		t.Fatal("the account was registered again after the kill")
	}
	s := m.Status()
	if len(s.Orders) != 1 || s.Orders[0].Orders != 2 {
		t.Fatalf("orders after the restart: %+v (want the interrupted one and the one that completed)", s.Orders)
	}
	if n := pb.Orders.Load(); n != 2 {
		t.Fatalf("Pebble saw %d orders, want 2", n)
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s does not parse after the kill: %v", path, err)
	}
}
