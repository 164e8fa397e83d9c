package templates_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/certs"
	"github.com/berthd/berth/config"
	"github.com/berthd/berth/internal/realparts"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/etcd"
)

// TestHTTPSNginx runs nginx.tmpl under the runner with the certificate
// store as a source and checks, with real TLS handshakes and HTTP
// requests through a real nginx: the certificate served per SNI in
// nginx-proxy's order, bad pairs falling back to default.crt without
// breaking the others, HTTPS_METHOD, HSTS, HTTP/2, the ACME challenge
// location, a renewal served without a manual step, and a handshake
// refused once there is no default.crt.
func TestHTTPSNginx(t *testing.T) {
	st, err := etcd.Embedded(t.Context(), etcd.EmbeddedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n := testenv.NewNginx(t)
	ports, err := realparts.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	httpsAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	challenge := httpServer(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "challenge %s %s", r.Host, r.URL.Path) })
	t.Setenv("BERTH_NGINX_LISTEN", n.Addr)
	t.Setenv("BERTH_NGINX_HTTPS_LISTEN", httpsAddr)
	t.Setenv("BERTH_NGINX_GRPC_LISTEN", "127.0.0.1:1")
	t.Setenv("BERTH_ACME_CHALLENGE", challenge)

	ca := testenv.NewCA(t)
	dir := t.TempDir()
	day := time.Now().Add(24 * time.Hour).Truncate(time.Second)
	for _, c := range []struct{ name, subject string }{
		{"exact.test", "exact.test"}, {"wild.test", "*.wild.test"}, {"shared", "shared"}, {"default", "default"},
		{"both.test", "both.test"}, {"tlsonly.test", "tlsonly.test"}, {"plain.test", "plain.test"},
		{"mismatch.test", "mismatch.test"},
	} {
		ca.Issue(t, dir, c.name, c.subject, day, c.subject)
	}
	_, otherKey := ca.Pair(t, "other", day, "other")
	testenv.WriteAtomic(t, filepath.Join(dir, "mismatch.test.key"), otherKey)
	ca.Issue(t, dir, "expired.test", "expired.test", time.Now().Add(-time.Minute), "expired.test")
	testenv.WriteAtomic(t, filepath.Join(dir, "garbage.test.crt"), []byte("garbage"))
	testenv.WriteAtomic(t, filepath.Join(dir, "garbage.test.key"), []byte("garbage"))

	put := func(id string, env map[string]string) {
		ip, port := testenv.HTTPBackend(t, id)
		b, _ := json.Marshal(records.Instance{ID: id, Name: id, Service: id, Host: "h1", IP: ip, Port: port, Env: env, State: records.StateRunning})
		if _, err := st.Put(t.Context(), records.ServiceKey("/berth", id, "h1", id), b); err != nil {
			t.Fatal(err)
		}
	}
	put("exact", map[string]string{"VIRTUAL_HOST": "exact.test"})
	put("wild", map[string]string{"VIRTUAL_HOST": "a.wild.test"})
	put("named", map[string]string{"VIRTUAL_HOST": "named.test", "CERT_NAME": "shared"})
	put("nocert", map[string]string{"VIRTUAL_HOST": "nocert.test"})
	put("both", map[string]string{"VIRTUAL_HOST": "both.test", "HTTPS_METHOD": "noredirect"})
	put("tlsonly", map[string]string{"VIRTUAL_HOST": "tlsonly.test", "HTTPS_METHOD": "nohttp", "HSTS": "off"})
	put("plain", map[string]string{"VIRTUAL_HOST": "plain.test", "HTTPS_METHOD": "nohttps"})
	put("mismatch", map[string]string{"VIRTUAL_HOST": "mismatch.test"})
	put("expired", map[string]string{"VIRTUAL_HOST": "expired.test"})
	put("garbage", map[string]string{"VIRTUAL_HOST": "garbage.test"})

	serveCerts(t, st, n, dir)

	// The certificate per SNI, and HTTP/2 on every TLS listener.
	for host, want := range map[string]string{
		"exact.test": "exact.test", "a.wild.test": "*.wild.test", "named.test": "shared", "nocert.test": "default",
		"both.test": "both.test", "tlsonly.test": "tlsonly.test", "plain.test": "default", "unknown.test": "default",
		"mismatch.test": "default", "expired.test": "default", "garbage.test": "default",
	} {
		cs, err := handshake(httpsAddr, host, nil)
		if err != nil {
			t.Fatalf("%s: %v\n%s", host, err, n.ErrorLog())
		}
		if got := cs.PeerCertificates[0].Subject.CommonName; got != want {
			t.Errorf("SNI %s: served %q, want %q", host, got, want)
		}
		if cs.NegotiatedProtocol != "h2" {
			t.Errorf("SNI %s: ALPN %q, want h2", host, cs.NegotiatedProtocol)
		}
	}
	// A host's own certificate verifies against the CA.
	if _, err := handshake(httpsAddr, "exact.test", ca.Pool); err != nil {
		t.Errorf("exact.test does not verify: %v", err)
	}

	type answer struct {
		code            int
		body, loc, hsts string
	}
	get := func(scheme, host, path string) answer {
		t.Helper()
		c := client(n.Addr, httpsAddr) // the certificates are checked by handshake
		resp, err := c.Get(scheme + "://" + host + path)
		if err != nil {
			t.Fatalf("%s://%s%s: %v", scheme, host, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		a := answer{code: resp.StatusCode, loc: resp.Header.Get("Location"), hsts: resp.Header.Get("Strict-Transport-Security")}
		if resp.StatusCode == http.StatusOK {
			a.body = strings.TrimSpace(string(b))
		}
		if scheme == "https" && resp.ProtoMajor != 2 {
			t.Errorf("https://%s: %s, want HTTP/2", host, resp.Proto)
		}
		return a
	}
	_, httpsPort, _ := net.SplitHostPort(httpsAddr)
	for _, tc := range []struct {
		scheme, host, path string
		want               answer
	}{
		{"http", "exact.test", "/x?y=1", answer{code: 301, loc: "https://exact.test:" + httpsPort + "/x?y=1"}},
		{"https", "exact.test", "/", answer{code: 200, body: "exact exact.test", hsts: "max-age=31536000"}},
		{"https", "a.wild.test", "/", answer{code: 200, body: "wild a.wild.test", hsts: "max-age=31536000"}},
		{"https", "named.test", "/", answer{code: 200, body: "named named.test", hsts: "max-age=31536000"}},
		{"http", "both.test", "/", answer{code: 200, body: "both both.test"}},
		{"https", "both.test", "/", answer{code: 200, body: "both both.test"}},          // noredirect: no HSTS
		{"https", "tlsonly.test", "/", answer{code: 200, body: "tlsonly tlsonly.test"}}, // HSTS=off
		{"http", "tlsonly.test", "/", answer{code: 503}},                                // nohttp: the unknown-host server
		{"http", "plain.test", "/", answer{code: 200, body: "plain plain.test"}},
		{"http", "nocert.test", "/", answer{code: 200, body: "nocert nocert.test"}}, // only default.crt: no redirect
		{"http", "mismatch.test", "/", answer{code: 200, body: "mismatch mismatch.test"}},
		// The ACME challenge goes to berth, before any redirect, on the default server too.
		{"http", "exact.test", "/.well-known/acme-challenge/tok1", answer{code: 200, body: "challenge exact.test /.well-known/acme-challenge/tok1"}},
		{"http", "both.test", "/.well-known/acme-challenge/tok2", answer{code: 200, body: "challenge both.test /.well-known/acme-challenge/tok2"}},
		{"http", "unknown.test", "/.well-known/acme-challenge/tok3", answer{code: 200, body: "challenge unknown.test /.well-known/acme-challenge/tok3"}},
	} {
		if got := get(tc.scheme, tc.host, tc.path); got != tc.want {
			t.Errorf("%s://%s%s: %+v, want %+v", tc.scheme, tc.host, tc.path, got, tc.want)
		}
	}
	// plain.test (nohttps) over TLS is the unknown host's: default.crt, 503.
	if cs, err := handshake(httpsAddr, "plain.test", nil); err != nil || cs.PeerCertificates[0].Subject.CommonName != "default" {
		t.Errorf("plain.test over TLS: %v", err)
	}

	// Renewal: a new pair with a later expiry is served after the
	// re-render, nothing else done.
	renewed := day.Add(48 * time.Hour)
	ca.Issue(t, dir, "exact.test", "exact.test", renewed, "exact.test")
	eventually(t, "the renewed exact.test", func() (bool, string) {
		cs, err := handshake(httpsAddr, "exact.test", ca.Pool)
		if err != nil {
			return false, err.Error()
		}
		na := cs.PeerCertificates[0].NotAfter
		return na.Equal(renewed), na.String() + "\n" + n.ErrorLog()
	})
	// A repaired pair is picked up too: mismatch.test gets its own.
	ca.Issue(t, dir, "mismatch.test", "mismatch.test", day, "mismatch.test")
	eventually(t, "mismatch.test repaired", func() (bool, string) {
		cs, err := handshake(httpsAddr, "mismatch.test", nil)
		if err != nil {
			return false, err.Error()
		}
		return cs.PeerCertificates[0].Subject.CommonName == "mismatch.test", cs.PeerCertificates[0].Subject.CommonName
	})

	// Without default.crt, a handshake for an unknown host is refused,
	// and a host without a certificate of its own is plain HTTP only.
	os.Remove(filepath.Join(dir, "default.crt"))
	eventually(t, "the unknown host's handshake refused", func() (bool, string) {
		_, err := handshake(httpsAddr, "unknown.test", nil)
		return err != nil, fmt.Sprint(err)
	})
	if cs, err := handshake(httpsAddr, "exact.test", ca.Pool); err != nil {
		t.Errorf("exact.test after default.crt went: %v", err)
	} else if !cs.PeerCertificates[0].NotAfter.Equal(renewed) {
		t.Errorf("exact.test: %v", cs.PeerCertificates[0].NotAfter)
	}
	if got := get("http", "nocert.test", "/"); got.code != 200 {
		t.Errorf("nocert.test over HTTP: %+v", got)
	}
}

// serveCerts is serve with the certificate store of dir as every
// template's second source (runner.WithCerts).
func serveCerts(t *testing.T, st store.Store, n *testenv.Nginx, dir string) {
	t.Helper()
	tmpl := config.Template{
		Name: "nginx", Src: "nginx.conf.tmpl", Origin: "test",
		Options:  dialect.Options{Dialect: dialect.Native, Includes: []string{"nginx.tmpl"}},
		Prefixes: []string{"/berth/services/"},
		Spec:     render.Spec{Name: "nginx", Dest: n.Conf, Check: n.CheckCommand()},
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sources := runner.WithCerts(certs.New(dir, certs.WithSettle(100*time.Millisecond), certs.WithLogger(logger)))
	renderer := render.New(render.WithLogger(logger))
	if res, err := runner.New(st, renderer, runner.WithLogger(logger), sources).Once(t.Context(), []config.Template{tmpl}); err != nil || res[0].Err != nil {
		t.Fatalf("first render: %v %+v", err, res)
	}
	n.Start(t)
	tmpl.Spec.Reload = n.ReloadCommand()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- runner.New(st, renderer, runner.WithLogger(logger), runner.WithDefaultWait(config.Wait{}), sources).Run(ctx, []config.Template{tmpl})
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func handshake(addr, sni string, roots *x509.CertPool) (tls.ConnectionState, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: &tls.Config{
		ServerName: sni, RootCAs: roots, InsecureSkipVerify: roots == nil, NextProtos: []string{"h2", "http/1.1"}}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState(), nil
}

// client sends http:// to httpAddr and https:// to httpsAddr (not
// verified), whatever the URL's host, and does not follow redirects.
func client(httpAddr, httpsAddr string) *http.Client {
	tr := &http.Transport{ForceAttemptHTTP2: true, DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		if strings.HasSuffix(addr, ":443") {
			return d.DialContext(ctx, network, httpsAddr)
		}
		return d.DialContext(ctx, network, httpAddr)
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func httpServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

func eventually(t *testing.T, what string, ok func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		good, detail := ok()
		if good {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 30s: %s", what, detail)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
