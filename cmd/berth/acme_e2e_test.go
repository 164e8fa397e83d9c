package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthd/berth/internal/realparts"
	"github.com/berthd/berth/internal/testenv"
)

// TestUpACME is HTTPS as a user runs it: berth up with [acme] pointing at
// a real Pebble and the shipped builtin:nginx.conf around builtin:nginx
// in front of a real nginx (HTTP on the port Pebble validates against,
// HTTPS on a high port), and a container with VIRTUAL_HOST and
// LETSENCRYPT_HOST. Before the certificate, HTTP serves the container and
// HTTPS has no certificate for it; Pebble validates HTTP-01 through the
// template's /.well-known/acme-challenge/ location; then HTTPS with SNI
// app.test, trusting only Pebble's root, reaches the container, HTTP
// redirects to HTTPS, nginx was reloaded (same master, new workers) after
// nginx -t passed on the file with the certificate, and the renewal of the
// short-lived certificate validates through the HTTP server that now only
// redirects.
func TestUpACME(t *testing.T) {
	r := newProxyRig(t)
	n := r.nginx
	_, p, _ := net.SplitHostPort(n.Addr)
	httpPort, _ := strconv.Atoi(p)
	dnsSrv := testenv.StartDNS(t) // every name is 127.0.0.1: this nginx
	pb := testenv.StartPebble(t, realparts.PebbleOptions{DNS: dnsSrv.Addr, HTTPPort: httpPort, Validity: 45 * time.Second})
	ports, err := realparts.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	httpsAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	r.envs = append(r.envs, "BERTH_NGINX_HTTPS_LISTEN="+httpsAddr)

	// The shipped templates out of the binary; the check keeps a copy of
	// every file nginx -t passed.
	checked := filepath.Join(n.Dir, "checked")
	if err := os.MkdirAll(checked, 0o755); err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(r.config)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []struct{ re, to string }{
		{`(?m)^src = .*$`, `src = "builtin:nginx.conf"`},
		{`(?m)^includes = .*$`, `includes = ["builtin:nginx"]`},
		{`(?m)^check = .*$`, fmt.Sprintf("check = %q", n.CheckCommand()+" && cp {{.src}} "+checked+"/$(date +%s%N).conf")},
	} {
		re := regexp.MustCompile(e.re)
		if !re.Match(conf) {
			t.Fatalf("the rig's berth.toml has no %s", e.re)
		}
		conf = re.ReplaceAll(conf, []byte(e.to))
	}
	conf = fmt.Appendf(conf, `
[acme]
directory_url = %q
ca_file = %q
email = "ops@example.com"
renew_before = "30s"
retry_min = "1s"
`, pb.DirectoryURL, pb.CAFile)
	if err := os.WriteFile(r.config, conf, 0o644); err != nil {
		t.Fatal(err)
	}

	// Orders wait until the test has seen the state before the certificate.
	release := make(chan struct{})
	hold := func() { <-release }
	pb.OnOrder.Store(&hold)
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()

	r.start()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(n.Conf); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("berth up never rendered nginx.conf")
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.Start(t)
	master := nginxMaster(t, n.Dir)
	img := r.whoamiImage()
	r.cli("run", "-d", "--name", "app", "-e", "VIRTUAL_HOST=app.test", "-e", "LETSENCRYPT_HOST=app.test", "-e", "PORT=80", "-e", "WHOAMI_NAME=app", img, "/whoami")

	// Before: plain HTTP, no certificate for app.test.
	r.waitAnswers("app.test", "200 app")
	waitCond(t, "Pebble receiving the order", 30*time.Second, func() bool { return pb.Orders.Load() == 1 })
	root, err := pb.Root()
	if err != nil {
		t.Fatal(err)
	}
	trust := x509.NewCertPool()
	if !trust.AppendCertsFromPEM(root) {
		t.Fatalf("Pebble's /roots/0: %q", root)
	}
	if s, err := tlsServe(httpsAddr, "app.test", trust); err == nil {
		t.Fatalf("HTTPS presents a certificate for app.test before any was issued: %s", s.Subject)
	}
	if code, body, err := n.Get("app.test", "/.well-known/acme-challenge/not-a-token"); err != nil || code != http.StatusNotFound {
		t.Errorf("a challenge path through nginx before the certificate: %d %q %v, want berth's 404", code, body, err)
	}
	workers := nginxWorkers(t, master)

	close(release)
	released = true
	pb.OnOrder.Store(nil)
	crt := filepath.Join(r.env.StateDir, "certs", "app.test.crt")
	waitCond(t, "the certificate in the certificate directory", 60*time.Second, func() bool {
		_, err := os.Stat(crt)
		return err == nil
	})
	var first *x509.Certificate
	waitCond(t, "HTTPS with SNI app.test through nginx", 30*time.Second, func() bool {
		first, err = tlsServe(httpsAddr, "app.test", trust)
		return err == nil
	})
	resp := httpsGet(t, httpsAddr, "app.test", trust)
	if resp.code != http.StatusOK || resp.body != "app" || !strings.HasPrefix(resp.hsts, "max-age=") {
		t.Errorf("HTTPS GET https://app.test/: %d %q (HSTS %q), want 200 \"app\" with HSTS", resp.code, resp.body, resp.hsts)
	}
	// (The old workers may take a last connection or two while they quit.)
	wantLoc := "https://app.test:" + strconv.Itoa(ports[0]) + "/x?y=1"
	waitCond(t, "HTTP for app.test redirecting to "+wantLoc, 20*time.Second, func() bool {
		return httpLocation(t, n.Addr, "app.test", "/x?y=1") == wantLoc
	})
	if code, body, err := n.Get("app.test", "/.well-known/acme-challenge/not-a-token"); err != nil || code != http.StatusNotFound {
		t.Errorf("a challenge path on the redirecting server: %d %q %v, want berth's 404 (not the redirect)", code, body, err)
	}
	if got := nginxMaster(t, n.Dir); got != master {
		t.Errorf("nginx was restarted (master %d, then %d), want a reload", master, got)
	}
	if w := nginxWorkers(t, master); w == workers {
		t.Errorf("nginx's workers are the same (%s): it was not reloaded", w)
	}
	if !checkedWith(t, checked, "ssl_certificate ") {
		t.Errorf("no file with the certificate passed nginx -t before the reload")
	}
	if n := r.metric(`berth_renders_total{outcome="check_failed",template="nginx"}`); n != 0 {
		t.Errorf("%v renders failed nginx -t", n)
	}

	// The renewal (a 45s certificate, renewed a third before its end):
	// validated while HTTP for app.test only redirects.
	waitCond(t, "the renewed certificate served over HTTPS", 90*time.Second, func() bool {
		s, err := tlsServe(httpsAddr, "app.test", trust)
		return err == nil && s.SerialNumber.Cmp(first.SerialNumber) != 0
	})
	if time.Now().After(first.NotAfter) {
		// Renewed only once the first had expired and HTTP was plain again.
		t.Errorf("the renewal came after the first certificate expired (%s): HTTP-01 failed while HTTP redirected", first.NotAfter)
	}
	if o := pb.Orders.Load(); o < 2 {
		t.Errorf("Pebble saw %d orders, want the issue and a renewal", o)
	}
	if got := nginxMaster(t, n.Dir); got != master {
		t.Errorf("nginx was restarted at the renewal (master %d, then %d)", master, got)
	}
	t.Logf("orders: %d", pb.Orders.Load())

	// A restarted berth up answers the challenges where nginx sends them:
	// BERTH_ACME_CHALLENGE, so nginx.conf, stays the same.
	before := challengeRoutes(t, n.Conf)
	r.stop(syscall.SIGTERM)
	r.start()
	waitCond(t, "the restarted daemon's render", 60*time.Second, func() bool {
		return r.metric(`berth_renders_total{outcome="unchanged",template="nginx"}`)+r.metric(`berth_renders_total{outcome="changed",template="nginx"}`) > 0
	})
	if after := challengeRoutes(t, n.Conf); after != before {
		t.Errorf("the challenge route moved across a restart of berth up: %s, then %s (nginx.conf rewritten, nginx reloaded)", before, after)
	}
	if code, body, err := n.Get("app.test", "/.well-known/acme-challenge/not-a-token"); err != nil || code != http.StatusNotFound {
		t.Errorf("a challenge path after the restart: %d %q %v, want berth's 404", code, body, err)
	}

	// berth render, with berth up's environment, would change nothing:
	// it routes the challenges where berth up answers them too.
	var out []byte
	waitCond(t, "berth render --dry-run --exit-code answering 0", 30*time.Second, func() bool {
		cmd := exec.Command(r.bin, "render", "--config", r.config, "--dry-run", "--exit-code")
		cmd.Env = append(os.Environ(), "BERTH_NGINX_LISTEN="+n.Addr, "BERTH_NGINX_GRPC_LISTEN=127.0.0.1:1")
		cmd.Env = append(cmd.Env, r.envs...)
		out, err = cmd.CombinedOutput()
		if err != nil {
			t.Logf("berth render --dry-run: %v\n%s", err, out) // a renewal in between, or something else
		}
		return err == nil
	})
}

// challengeRoutes lists where nginx.conf sends /.well-known/acme-challenge/.
func challengeRoutes(t *testing.T, conf string) string {
	t.Helper()
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`location \^~ /\.well-known/acme-challenge/ \{\s*proxy_pass ([^;]+);`).FindAllStringSubmatch(string(b), -1)
	if len(m) == 0 {
		t.Fatalf("nginx.conf routes no ACME challenge:\n%s", b)
	}
	seen := map[string]bool{}
	var out []string
	for _, x := range m {
		if !seen[x[1]] {
			seen[x[1]] = true
			out = append(out, x[1])
		}
	}
	return strings.Join(out, " ")
}

// waitCond polls ok until it holds or the bound passes.
func waitCond(t *testing.T, what string, bound time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", bound, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tlsServe does a TLS handshake with addr for sni, verifying against
// trust only, and returns the leaf.
func tlsServe(addr, sni string, trust *x509.CertPool) (*x509.Certificate, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: sni, RootCAs: trust})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

type httpsAnswer struct {
	code       int
	body, hsts string
}

// httpsGet sends GET / to addr as https://host/, trusting only trust.
func httpsGet(t *testing.T, addr, host string, trust *x509.CertPool) httpsAnswer {
	t.Helper()
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: trust},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + host + "/")
	if err != nil {
		t.Fatalf("GET https://%s/ at %s: %v", host, addr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return httpsAnswer{code: resp.StatusCode, body: strings.TrimSpace(string(b)), hsts: resp.Header.Get("Strict-Transport-Security")}
}

// httpLocation sends GET path with Host host over plain HTTP and returns
// the Location of a 301 ("" otherwise).
func httpLocation(t *testing.T, addr, host, path string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	req.Host = host
	c := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently {
		return ""
	}
	return resp.Header.Get("Location")
}

// nginxMaster is the pid in nginx's pid file.
func nginxMaster(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "nginx.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// nginxWorkers lists the master's children (a reload replaces them).
func nginxWorkers(t *testing.T, master int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", master, master))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// checkedWith reports whether a file nginx -t passed contains s.
func checkedWith(t *testing.T, dir, s string) bool {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.conf"))
	for _, f := range files {
		if b, _ := os.ReadFile(f); strings.Contains(string(b), s) {
			return true
		}
	}
	return false
}
