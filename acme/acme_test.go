package acme_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthd/berth/acme"
	"github.com/berthd/berth/internal/realparts"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/memstore"
)

// putInstance writes the instance record a registrar would write for a
// container with env and labels.
func putInstance(t *testing.T, st store.Store, id string, env, labels map[string]string) string {
	t.Helper()
	in := records.Instance{ID: id, Name: "ctr-" + id, Service: "web", Host: "h1", IP: "127.0.0.1", Port: 80,
		Env: env, Labels: labels, Health: records.HealthNone, State: records.StateRunning, Weight: 1}
	b, _ := json.Marshal(in)
	key := records.ServiceKey("", "web", "h1", id)
	if _, err := st.Put(context.Background(), key, b); err != nil {
		t.Fatal(err)
	}
	return key
}

// runManager runs a Manager until the test ends (or stop is called).
func runManager(t *testing.T, st store.Store, cfg acme.Config, opts ...acme.Option) (m *acme.Manager, stop func()) {
	t.Helper()
	m, err := acme.New(st, cfg, append([]acme.Option{acme.WithLogger(slog.New(slog.NewTextHandler(testWriter{t}, nil)))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return m, stop
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// proxy is the test's nginx: port 80's role on n.Addr, routing the
// challenge to berth's responder before anything else, and HTTPS from the
// certificate directory once enabled.
type proxy struct {
	n         *testenv.Nginx
	https     string // 127.0.0.1:port of the HTTPS server
	responder string
	backend   string
	certs     string
}

func startProxy(t *testing.T, responder http.Handler, certs string) *proxy {
	t.Helper()
	rs := httptest.NewServer(responder)
	t.Cleanup(rs.Close)
	ip, port := testenv.HTTPBackend(t, "backend")
	ports, err := realparts.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{n: testenv.NewNginx(t), https: fmt.Sprintf("127.0.0.1:%d", ports[0]),
		responder: strings.TrimPrefix(rs.URL, "http://"), backend: fmt.Sprintf("%s:%d", ip, port), certs: certs}
	p.write(t, nil)
	p.n.Start(t)
	return p
}

func (p *proxy) write(t *testing.T, httpsHosts []string) {
	t.Helper()
	var b strings.Builder
	b.WriteString(p.n.Prelude())
	fmt.Fprintf(&b, `    server {
        listen %s default_server;
        server_name _;
        location ^~ /.well-known/acme-challenge/ { proxy_pass http://%s; }
        location / { proxy_pass http://%s; }
    }
`, p.n.Addr, p.responder, p.backend)
	for _, h := range httpsHosts {
		fmt.Fprintf(&b, `    server {
        listen %s ssl;
        server_name %s;
        ssl_certificate %s;
        ssl_certificate_key %s;
        location / { proxy_pass http://%s; }
    }
`, p.https, h, filepath.Join(p.certs, h+".crt"), filepath.Join(p.certs, h+".key"), p.backend)
	}
	b.WriteString("}\n")
	if err := os.WriteFile(p.n.Conf, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (p *proxy) serveHTTPS(t *testing.T, hosts ...string) {
	t.Helper()
	p.write(t, hosts)
	if out, err := exec.Command("sh", "-c", p.n.ReloadCommand()).CombinedOutput(); err != nil {
		t.Fatalf("nginx reload: %v: %s %s", err, out, p.n.ErrorLog())
	}
	// The reload is a signal: nginx's master opens the new listener after
	// the command returns.
	waitFor(t, "nginx's HTTPS listener after the reload", 20*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", p.https, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// getHTTPS fetches https://host/ through nginx trusting root alone, and
// returns the body and the serial of the certificate nginx served.
func (p *proxy) getHTTPS(root []byte, host string) (string, string, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(root) {
		return "", "", fmt.Errorf("bad root PEM")
	}
	var serial string
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: host, VerifyConnection: func(cs tls.ConnectionState) error {
			serial = cs.PeerCertificates[0].SerialNumber.String()
			return nil
		}},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, p.https)
		},
		DisableKeepAlives: true,
	}}
	resp, err := c.Get("https://" + host + "/")
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), serial, err
}

func fileSerial(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c.SerialNumber.String()
}

func baseConfig(t *testing.T, p *realparts.Pebble) acme.Config {
	dir := t.TempDir()
	return acme.Config{DirectoryURL: p.DirectoryURL, CAFile: p.CAFile, Email: "ops@example.com",
		Storage: filepath.Join(dir, "acme"), CertsDir: filepath.Join(dir, "certs"),
		RetryMin: time.Second, RetryMax: 4 * time.Second, Timeout: 30 * time.Second, Host: "h1"}
}

// A container with LETSENCRYPT_HOST gets a certificate, written to the
// certificate directory and shared in the store; an HTTPS request that
// trusts only Pebble's root reaches the backend through nginx; the
// short-lived certificate is renewed and the file replaced; the invalid
// names of the same container are reported and never ordered.
func TestPebbleIssuesServesAndRenews(t *testing.T) {
	dnsSrv := testenv.StartDNS(t)
	resp := acme.NewResponder()
	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	px := startProxy(t, resp, certs)
	pb := startPebble(t, dnsSrv.Addr, px, 45*time.Second)

	st := memstore.New()
	t.Cleanup(func() { st.Close() })
	putInstance(t, st, "c1", map[string]string{
		"VIRTUAL_HOST":     "app.example.com",
		"LETSENCRYPT_HOST": "app.example.com, www.example.com,bad_name.example.com,*.example.com,10.0.0.1",
	}, nil)
	cfg := baseConfig(t, pb)
	cfg.CertsDir = certs
	cfg.RenewBefore = 30 * time.Second // at most a third of 45s: renewed ~15s before expiry
	m, _ := runManager(t, st, cfg, acme.WithResponder(resp))

	crt := filepath.Join(certs, "app.example.com.crt")
	waitFor(t, "the certificate file", 60*time.Second, func() bool { return fileSerial(t, crt) != "" })
	first := fileSerial(t, crt)
	if fi, err := os.Stat(filepath.Join(certs, "app.example.com.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	// each name's pair is its own file, written one after the other
	waitFor(t, "www.example.com's copy of the set's certificate", 10*time.Second, func() bool {
		return fileSerial(t, filepath.Join(certs, "www.example.com.crt")) == first
	})
	if _, err := st.Get(context.Background(), "/berth/acme/certs/app.example.com"); err != nil {
		t.Fatalf("the certificate is not shared in the store: %v", err)
	}
	for _, bad := range []string{"bad_name.example.com", "*.example.com", "10.0.0.1"} {
		if _, err := os.Stat(filepath.Join(certs, bad+".crt")); err == nil {
			t.Errorf("%s got a certificate file", bad)
		}
	}
	if s := m.Status(); len(s.Invalid) != 3 {
		t.Errorf("invalid names reported: %+v, want 3", s.Invalid)
	}

	px.serveHTTPS(t, "app.example.com")
	root, err := pb.Root()
	if err != nil {
		t.Fatal(err)
	}
	body, serial, err := px.getHTTPS(root, "app.example.com")
	if err != nil || !strings.HasPrefix(body, "backend") {
		t.Fatalf("HTTPS through nginx: %q, %v", body, err)
	}
	if serial != first {
		t.Fatalf("nginx served serial %s, the file has %s", serial, first)
	}
	// Pebble's chain, and nothing else, is what the client trusted.
	if _, _, err := px.getHTTPS(mustReadFile(t, pb.CAFile), "app.example.com"); err == nil {
		t.Fatal("the handshake succeeded with the wrong root: the test proves nothing")
	}

	// Renewal: the 45s certificate is replaced before it expires.
	waitFor(t, "the renewed certificate", 60*time.Second, func() bool {
		s := fileSerial(t, crt)
		return s != "" && s != first
	})
	renewed := fileSerial(t, crt)
	px.serveHTTPS(t, "app.example.com")
	waitFor(t, "nginx serving the renewed certificate", 20*time.Second, func() bool {
		_, s, err := px.getHTTPS(root, "app.example.com")
		return err == nil && s == renewed
	})
	t.Logf("orders Pebble received: %d (issue + renewals)", pb.Orders.Load())
}

func mustReadFile(t *testing.T, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
