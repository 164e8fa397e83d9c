package daemon

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/berthd/berth/certs"
	"github.com/berthd/berth/config"
	"github.com/berthd/berth/internal/realparts"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/store/memstore"
)

// TestFollowHAProxyCerts: with the certificate store running, a renewed
// pair reaches a live HAProxy template's running worker through the
// Runtime API by itself: the new certificate is served, by the same
// worker (no reload).
func TestFollowHAProxyCerts(t *testing.T) {
	h := testenv.NewHAProxy(t)
	ports, err := realparts.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	httpsAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	ca := testenv.NewCA(t)
	dir := t.TempDir()
	day := time.Now().Add(24 * time.Hour).Truncate(time.Second)
	ca.Issue(t, dir, "exact.test", "exact.test", day, "exact.test")
	conf := h.Global() + "    ssl-load-extra-del-ext\n" + fmt.Sprintf(`
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend f
    bind %s
    bind %s ssl crt %s/exact.test.crt
    http-request return status 200
`, h.Addr, httpsAddr, dir)
	if err := os.WriteFile(h.Conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	h.Start(t)
	worker := h.WorkerPID(t)

	d := &Daemon{log: slog.New(slog.DiscardHandler),
		certs:     certs.New(dir, certs.WithSettle(50*time.Millisecond), certs.WithLogger(slog.New(slog.DiscardHandler))),
		templates: []config.Template{{Name: "haproxy", Live: "haproxy", LiveDir: h.Dir}}}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{}, 2)
	go func() { d.certs.Run(ctx); done <- struct{}{} }()
	go func() { d.followHAProxyCerts(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	<-d.certs.Synced()

	served := func() time.Time {
		c, err := tls.Dial("tcp", httpsAddr, &tls.Config{ServerName: "exact.test", RootCAs: ca.Pool})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].NotAfter
	}
	if got := served(); !got.Equal(day) {
		t.Fatalf("served until %v, want %v", got, day)
	}
	renewed := day.Add(48 * time.Hour)
	ca.Issue(t, dir, "exact.test", "exact.test", renewed, "exact.test")
	deadline := time.Now().Add(30 * time.Second)
	for !served().Equal(renewed) {
		if time.Now().After(deadline) {
			t.Fatalf("the renewed certificate is not served after 30s\n%s", h.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if w := h.WorkerPID(t); w != worker {
		t.Errorf("worker %d, was %d: HAProxy reloaded", w, worker)
	}
}

// TestUnitCertDir: with Config.CertDir, every template reads the
// directory as .Certs, and a pair added, renewed or broken re-renders it.
func TestUnitCertDir(t *testing.T) {
	st := memstore.New()
	defer st.Close()
	ca := testenv.NewCA(t)
	dir := filepath.Join(t.TempDir(), "certs") // made by the daemon
	tmpl, dest := unitTemplate(t, `certs{{"\n"}}{{range .Certs.List}}{{.Name}} {{.NotAfter.Unix}}{{"\n"}}{{end}}`)
	tmpl.Spec.Check = ""
	start(t, st, nil, Config{CertDir: dir, Commander: &commands{}}, tmpl)
	await(t, "the directory made", func() bool { fi, err := os.Stat(dir); return err == nil && fi.Mode().Perm() == 0o700 })
	first := time.Now().Add(24 * time.Hour).Truncate(time.Second)
	ca.Issue(t, dir, "a.test", "a.test", first, "a.test")
	await(t, "a.test rendered", fileIs(dest, fmt.Sprintf("certs\na.test %d\n", first.Unix())))
	renewed := first.Add(time.Hour)
	ca.Issue(t, dir, "a.test", "a.test", renewed, "a.test")
	await(t, "a.test renewed", fileIs(dest, fmt.Sprintf("certs\na.test %d\n", renewed.Unix())))
	testenv.WriteAtomic(t, filepath.Join(dir, "a.test.crt"), []byte("garbage"))
	await(t, "a.test left out", fileIs(dest, "certs\n"))
}
