package acme_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/berthd/berth/internal/realparts"
)

// The real ACME server of these tests: Pebble, built from the module's
// tool dependency, on loopback, with its own test CA; a DNS responder the
// test controls; a counting reverse proxy in front of Pebble's ACME API
// (measurement only: it passes everything through).

var pebbleBuild struct {
	once sync.Once
	bin  string
	dir  string // the pebble module (its test certificates)
	err  error
}

func pebbleBinary(t *testing.T) (bin, moddir string) {
	t.Helper()
	pebbleBuild.once.Do(func() {
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/letsencrypt/pebble/v2").Output()
		if err != nil {
			pebbleBuild.err = fmt.Errorf("go list pebble: %w", err)
			return
		}
		pebbleBuild.dir = strings.TrimSpace(string(out))
		dir, err := os.MkdirTemp("", "berth-pebble-")
		if err != nil {
			pebbleBuild.err = err
			return
		}
		pebbleBuild.bin = filepath.Join(dir, "pebble")
		cmd := exec.Command("go", "build", "-o", pebbleBuild.bin, "github.com/letsencrypt/pebble/v2/cmd/pebble")
		if b, err := cmd.CombinedOutput(); err != nil {
			pebbleBuild.err = fmt.Errorf("go build pebble: %v: %s", err, b)
		}
	})
	if pebbleBuild.err != nil {
		t.Fatal(pebbleBuild.err)
	}
	return pebbleBuild.bin, pebbleBuild.dir
}

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	code := m.Run()
	if pebbleBuild.bin != "" {
		os.RemoveAll(filepath.Dir(pebbleBuild.bin))
	}
	os.Exit(code)
}

// fakeDNS answers A queries: the address set for the name, else 127.0.0.1.
type fakeDNS struct {
	Addr string
	mu   sync.Mutex
	to   map[string]string
}

func (d *fakeDNS) set(name, addr string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.to[dns.Fqdn(name)] = addr
}

func startDNS(t *testing.T) *fakeDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The same port over TCP too: Pebble's resolver may use either.
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	d := &fakeDNS{Addr: pc.LocalAddr().String(), to: map[string]string{}}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		for _, q := range r.Question {
			if q.Qtype != dns.TypeA {
				continue
			}
			d.mu.Lock()
			addr, ok := d.to[strings.ToLower(q.Name)]
			d.mu.Unlock()
			if !ok {
				addr = "127.0.0.1"
			}
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 0}, A: net.ParseIP(addr)})
		}
		_ = w.WriteMsg(m)
	})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		go srv.ActivateAndServe()
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return d
}

// pebble is one running Pebble behind a counting proxy.
type pebble struct {
	Dir    string // DirectoryURL, through the proxy
	CAFile string // pebble.minica.pem: trust for its API
	mgmt   string // management API address
	orders atomic.Int64
	// onOrder, if set, is called for each new-order request before it is
	// passed on.
	onOrder atomic.Pointer[func()]
	cmd     *exec.Cmd
}

type pebbleOpts struct {
	httpPort int           // where Pebble validates HTTP-01 (the test's nginx)
	validity time.Duration // certificate lifetime (default 90 days)
}

func startPebble(t *testing.T, dnsAddr string, o pebbleOpts) *pebble {
	t.Helper()
	bin, mod := pebbleBinary(t)
	ports, err := realparts.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	validity := o.validity
	if validity == 0 {
		validity = 90 * 24 * time.Hour
	}
	dir := t.TempDir()
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":           fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"managementListenAddress": fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"certificate":             filepath.Join(mod, "test/certs/localhost/cert.pem"),
		"privateKey":              filepath.Join(mod, "test/certs/localhost/key.pem"),
		"httpPort":                o.httpPort,
		"tlsPort":                 ports[2],
		"ocspResponderURL":        "",
		"keyAlgorithm":            "ecdsa",
		"retryAfter":              map[string]int{"authz": 1, "order": 1},
		"profiles":                map[string]any{"default": map[string]any{"description": "test", "validityPeriod": int(validity.Seconds())}},
	}}
	b, _ := json.Marshal(conf)
	cf := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(cf, b, 0o644); err != nil {
		t.Fatal(err)
	}
	p := &pebble{CAFile: filepath.Join(mod, "test/certs/pebble.minica.pem"), mgmt: fmt.Sprintf("127.0.0.1:%d", ports[1])}
	log, err := os.Create(filepath.Join(dir, "pebble.log"))
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "-config", cf, "-dnsserver", dnsAddr)
	p.cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	p.cmd.Stdout, p.cmd.Stderr = log, log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("pebble log:\n%s", tail(string(b), 4000))
		}
	})

	trust := x509.NewCertPool()
	ca, err := os.ReadFile(p.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	trust.AppendCertsFromPEM(ca)
	upstream, _ := url.Parse(fmt.Sprintf("https://127.0.0.1:%d", ports[0]))
	rp := httputil.NewSingleHostReverseProxy(upstream)
	rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: trust, ServerName: "localhost"}}
	proxy := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/order-plz" {
			p.orders.Add(1)
			if f := p.onOrder.Load(); f != nil {
				(*f)()
			}
		}
		rp.ServeHTTP(w, r)
	}))
	kp, err := tls.LoadX509KeyPair(filepath.Join(mod, "test/certs/localhost/cert.pem"), filepath.Join(mod, "test/certs/localhost/key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	proxy.TLS = &tls.Config{Certificates: []tls.Certificate{kp}}
	proxy.StartTLS()
	t.Cleanup(proxy.Close)
	p.Dir = proxy.URL + "/dir"

	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: trust}}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(p.Dir)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble not answering: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

// root is the PEM of the root of the chains Pebble issues (its
// management API's /roots/0): the only root a client of the issued
// certificates trusts.
func (p *pebble) root(t *testing.T) []byte {
	t.Helper()
	ca, _ := os.ReadFile(p.CAFile)
	trust := x509.NewCertPool()
	trust.AppendCertsFromPEM(ca)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: trust, ServerName: "localhost"}}}
	resp, err := c.Get("https://" + p.mgmt + "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("pebble /roots/0: %d %v", resp.StatusCode, err)
	}
	return b
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
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
