package templates_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/certs"
	"github.com/berthd/berth/endpoints/haproxy"
	"github.com/berthd/berth/internal/realparts"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/store"
)

// TestHTTPSHAProxy renders haproxy.cfg.tmpl with the certificate store,
// runs a real HAProxy on it and checks the certificate per SNI, HTTP/2,
// HTTPS_METHOD, HSTS and the ACME challenge; then renews a certificate:
// the file stays byte-identical (no reload), CertSync hands the new pair
// to the same worker through the Runtime API, and it is served.
func TestHTTPSHAProxy(t *testing.T) {
	h := newHAProxy(t)
	ports, err := realparts.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	httpsAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	challenge := httpServer(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "challenge %s %s", r.Host, r.URL.Path) })
	env := map[string]string{"BERTH_HAPROXY_LISTEN": h.Addr, "BERTH_LIVE_DIR": h.Dir, "BERTH_HAPROXY_HTTPS_LISTEN": httpsAddr, "BERTH_ACME_CHALLENGE": challenge}

	ca := testenv.NewCA(t)
	dir := t.TempDir()
	day := time.Now().Add(24 * time.Hour).Truncate(time.Second)
	for _, c := range []struct{ name, subject string }{{"exact.test", "exact.test"}, {"wild.test", "*.wild.test"}, {"default", "default"}, {"both.test", "both.test"}, {"mismatch.test", "mismatch.test"}} {
		ca.Issue(t, dir, c.name, c.subject, day, c.subject)
	}
	_, otherKey := ca.Pair(t, "other", day, "other")
	testenv.WriteAtomic(t, filepath.Join(dir, "mismatch.test.key"), otherKey)

	var kvs []store.KV
	put := func(id string, env map[string]string) {
		ip, port := testenv.HTTPBackend(t, id)
		b, _ := json.Marshal(records.Instance{ID: id, Name: id, Service: id, Host: "h1", IP: ip, Port: port, Env: env, State: records.StateRunning})
		kvs = append(kvs, store.KV{Key: records.ServiceKey("/berth", id, "h1", id), Value: b})
	}
	put("exact", map[string]string{"VIRTUAL_HOST": "exact.test"})
	put("wild", map[string]string{"VIRTUAL_HOST": "a.wild.test"})
	put("both", map[string]string{"VIRTUAL_HOST": "both.test", "HTTPS_METHOD": "noredirect"})
	put("mismatch", map[string]string{"VIRTUAL_HOST": "mismatch.test"})
	tm, err := dialect.Parse("haproxy.cfg.tmpl", dialect.Options{Dialect: dialect.Native})
	if err != nil {
		t.Fatal(err)
	}
	st := certs.New(dir, certs.WithLogger(slog.New(slog.DiscardHandler)))
	renderConf := func() []byte {
		t.Helper()
		st.Scan()
		set, _ := st.Current()
		var buf bytes.Buffer
		if err := tm.Execute(&buf, dialect.Input{KVs: kvs, Env: env, Certs: set}); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	conf := renderConf()
	haproxyCheck(t, h, conf)
	h.Start(t)
	master, worker := h.MasterPID(), h.WorkerPID(t)

	for host, want := range map[string]string{"exact.test": "exact.test", "a.wild.test": "*.wild.test", "both.test": "both.test",
		"mismatch.test": "default", "unknown.test": "default"} {
		cs, err := handshake(httpsAddr, host, nil)
		if err != nil {
			t.Fatalf("%s: %v\n%s", host, err, h.Log())
		}
		if got := cs.PeerCertificates[0].Subject.CommonName; got != want {
			t.Errorf("SNI %s: served %q, want %q", host, got, want)
		}
		if cs.NegotiatedProtocol != "h2" {
			t.Errorf("SNI %s: ALPN %q, want h2", host, cs.NegotiatedProtocol)
		}
	}
	_, httpsPort, _ := net.SplitHostPort(httpsAddr)
	c := client(h.Addr, httpsAddr)
	for _, tc := range []struct {
		url             string
		code            int
		body, loc, hsts string
	}{
		{"http://exact.test/x?y=1", 301, "", "https://exact.test:" + httpsPort + "/x?y=1", ""},
		{"https://exact.test/", 200, "exact exact.test", "", "max-age=31536000"},
		{"https://a.wild.test/", 200, "wild a.wild.test", "", "max-age=31536000"},
		{"http://both.test/", 200, "both both.test", "", ""},
		{"https://both.test/", 200, "both both.test", "", ""},
		{"http://mismatch.test/", 200, "mismatch mismatch.test", "", ""}, // only default.crt: not redirected
		{"http://exact.test/.well-known/acme-challenge/t1", 200, "challenge exact.test /.well-known/acme-challenge/t1", "", ""},
		{"http://unknown.test/.well-known/acme-challenge/t2", 200, "challenge unknown.test /.well-known/acme-challenge/t2", "", ""},
	} {
		resp, err := c.Get(tc.url)
		if err != nil {
			t.Fatalf("%s: %v", tc.url, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body := ""
		if resp.StatusCode == 200 {
			body = strings.TrimSpace(string(b))
		}
		if resp.StatusCode != tc.code || body != tc.body || resp.Header.Get("Location") != tc.loc || resp.Header.Get("Strict-Transport-Security") != tc.hsts {
			t.Errorf("%s: %d %q Location %q HSTS %q, want %d %q %q %q", tc.url, resp.StatusCode, body, resp.Header.Get("Location"),
				resp.Header.Get("Strict-Transport-Security"), tc.code, tc.body, tc.loc, tc.hsts)
		}
		if strings.HasPrefix(tc.url, "https") && resp.ProtoMajor != 2 {
			t.Errorf("%s: %s, want HTTP/2", tc.url, resp.Proto)
		}
	}

	// Renewal: the same files, new content. The configuration does not
	// change, so nothing reloads; the Runtime API takes the new pair.
	sync := haproxy.NewCertSync(h.Socket, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := sync.Sync(ctx, mustSet(st)); err != nil { // the first sync hands over what the worker loaded
		t.Fatal(err)
	}
	renewed := day.Add(72 * time.Hour)
	ca.Issue(t, dir, "exact.test", "exact.test", renewed, "exact.test")
	if again := renderConf(); !bytes.Equal(again, conf) {
		t.Fatalf("a renewal changed haproxy.cfg:\n%s", again)
	}
	if cs, err := handshake(httpsAddr, "exact.test", ca.Pool); err != nil || cs.PeerCertificates[0].NotAfter.Equal(renewed) {
		t.Fatalf("before the hand-over: %v (or the renewed certificate is already served)", err)
	}
	n, err := sync.Sync(ctx, mustSet(st))
	if err != nil || n != 1 {
		t.Fatalf("sync: %d set, %v", n, err)
	}
	cs, err := handshake(httpsAddr, "exact.test", ca.Pool)
	if err != nil {
		t.Fatal(err)
	}
	if !cs.PeerCertificates[0].NotAfter.Equal(renewed) {
		t.Errorf("exact.test serves a certificate until %v, want the renewed one (%v)", cs.PeerCertificates[0].NotAfter, renewed)
	}
	if m, w := h.MasterPID(), h.WorkerPID(t); m != master || w != worker {
		t.Errorf("HAProxy master/worker %d/%d, was %d/%d: it reloaded", m, w, master, worker)
	}
	if n, err := sync.Sync(ctx, mustSet(st)); err != nil || n != 0 {
		t.Errorf("a second sync set %d (%v), want nothing", n, err)
	}

	// A certificate a host starts to use is a new file: the configuration
	// names it (haproxy -c passes; the reload loads it).
	ca.Issue(t, dir, "mismatch.test", "mismatch.test", day, "mismatch.test")
	added := renderConf()
	if bytes.Equal(added, conf) || !bytes.Contains(added, []byte(filepath.Join(dir, "mismatch.test.crt"))) {
		t.Errorf("a new host certificate is not in haproxy.cfg:\n%s", added)
	}
	haproxyCheck(t, h, added) // writes it to h.Conf
	if out, err := (render.Exec{}).Run(t.Context(), []string{"/bin/sh", "-c", h.ReloadCommand()}); err != nil {
		t.Fatalf("reload: %v %s", err, out)
	}
	ictx, icancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer icancel()
	if _, err := haproxy.NewClient(h.Socket).WaitWorker(ictx, worker); err != nil {
		t.Fatalf("no new worker after the reload: %v\n%s", err, h.Log())
	}
	if cs, err := handshake(httpsAddr, "mismatch.test", ca.Pool); err != nil {
		t.Errorf("mismatch.test after the reload: %v", err)
	} else if cn := cs.PeerCertificates[0].Subject.CommonName; cn != "mismatch.test" {
		t.Errorf("mismatch.test after the reload: served %q", cn)
	}
	// The new worker took the renewed exact.test from the file.
	if cs, err := handshake(httpsAddr, "exact.test", ca.Pool); err != nil || !cs.PeerCertificates[0].NotAfter.Equal(renewed) {
		t.Errorf("exact.test after the reload: %v", err)
	}
}

func mustSet(st *certs.Store) *certs.Set { s, _ := st.Current(); return s }
