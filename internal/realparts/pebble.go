package realparts

import (
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
	"time"

	"github.com/miekg/dns"
)

// PebbleModule is the Pebble (Let's Encrypt's test ACME server) that
// PebbleBinary builds: the main module's tool dependency.
const PebbleModule = "github.com/letsencrypt/pebble/v2"

// PebbleBinary finds Pebble: $BERTH_PEBBLE, else a build of the main
// module's pebble tool cached under the user cache directory
// (berth/pebble-<version>/pebble, built with the go command on first use).
// It also returns the Pebble module's directory, which holds its test
// certificates (test/certs).
func PebbleBinary() (bin, moddir string, err error) {
	// go mod download, not go list -m: on a cold module cache list gives
	// no Dir (the module is not downloaded yet), and the paths made of it
	// were relative ones.
	out, err := exec.Command("go", "mod", "download", "-json", PebbleModule).Output()
	if err != nil {
		return "", "", fmt.Errorf("go mod download %s: %w", PebbleModule, err)
	}
	var mod struct{ Dir, Version, Error string }
	if err := json.Unmarshal(out, &mod); err != nil {
		return "", "", fmt.Errorf("go mod download %s: %w", PebbleModule, err)
	}
	if mod.Error != "" || mod.Dir == "" || mod.Version == "" {
		return "", "", fmt.Errorf("go mod download %s: no module directory or version (%s)", PebbleModule, mod.Error)
	}
	moddir, version := mod.Dir, mod.Version
	if p := os.Getenv("BERTH_PEBBLE"); p != "" {
		return p, moddir, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", "", err
	}
	bin = filepath.Join(cache, "berth", "pebble-"+version, "pebble")
	if _, err := os.Stat(bin); err == nil {
		return bin, moddir, nil
	}
	tmp := bin + fmt.Sprintf(".%d", os.Getpid())
	if b, err := exec.Command("go", "build", "-o", tmp, PebbleModule+"/cmd/pebble").CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("go build pebble: %v: %s", err, b)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", "", err
	}
	return bin, moddir, nil
}

// DNS is a tiny DNS responder on a loopback UDP and TCP port: every A
// query is answered with the address set for the name, else 127.0.0.1
// (what Pebble's -dnsserver resolves the test's names with).
type DNS struct {
	Addr string
	mu   sync.Mutex
	to   map[string]string
	srvs []*dns.Server
}

// StartDNS starts a DNS responder.
func StartDNS() (*DNS, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		return nil, err
	}
	d := &DNS{Addr: pc.LocalAddr().String(), to: map[string]string{}}
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
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET}, A: net.ParseIP(addr)})
		}
		_ = w.WriteMsg(m)
	})
	d.srvs = []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}}
	for _, s := range d.srvs {
		go s.ActivateAndServe()
	}
	return d, nil
}

// Set makes name resolve to addr.
func (d *DNS) Set(name, addr string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.to[dns.Fqdn(strings.ToLower(name))] = addr
}

// Stop stops the responder.
func (d *DNS) Stop() {
	for _, s := range d.srvs {
		_ = s.Shutdown()
	}
}

// PebbleOptions configure StartPebble.
type PebbleOptions struct {
	DNS      string        // the resolver Pebble validates with (a DNS's Addr)
	HTTPPort int           // the port HTTP-01 validation connects to (the proxy's port 80)
	Validity time.Duration // issued certificates' lifetime (default 90 days)
}

// Pebble is a running Pebble on loopback, with its own CA, behind a
// counting reverse proxy (measurement only: it passes everything on).
type Pebble struct {
	DirectoryURL string // through the proxy
	CAFile       string // pebble.minica.pem: the trust for its API's TLS
	// Orders counts new-order requests; OnOrder, if set, is called for
	// each before it is passed on.
	Orders  atomic.Int64
	OnOrder atomic.Pointer[func()]

	Log   string // Pebble's log file
	mgmt  string
	trust *x509.CertPool
	cmd   *exec.Cmd
	done  chan error
	proxy *httptest.Server
}

// StartPebble starts Pebble in dir (which must exist) and waits until its
// directory answers. PEBBLE_VA_NOSLEEP=1, PEBBLE_WFE_NONCEREJECT=0 and
// PEBBLE_AUTHZREUSE=0 keep it fast and deterministic.
func StartPebble(dir string, o PebbleOptions) (*Pebble, error) {
	bin, mod, err := PebbleBinary()
	if err != nil {
		return nil, err
	}
	ports, err := FreePorts(3)
	if err != nil {
		return nil, err
	}
	validity := o.Validity
	if validity == 0 {
		validity = 90 * 24 * time.Hour
	}
	certFile, keyFile := filepath.Join(mod, "test/certs/localhost/cert.pem"), filepath.Join(mod, "test/certs/localhost/key.pem")
	conf, _ := json.Marshal(map[string]any{"pebble": map[string]any{
		"listenAddress":           fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"managementListenAddress": fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"certificate":             certFile,
		"privateKey":              keyFile,
		"httpPort":                o.HTTPPort,
		"tlsPort":                 ports[2],
		"ocspResponderURL":        "",
		"keyAlgorithm":            "ecdsa",
		"retryAfter":              map[string]int{"authz": 1, "order": 1},
		"profiles":                map[string]any{"default": map[string]any{"description": "berth tests", "validityPeriod": int(validity.Seconds())}},
	}})
	cf := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(cf, conf, 0o644); err != nil {
		return nil, err
	}
	p := &Pebble{CAFile: filepath.Join(mod, "test/certs/pebble.minica.pem"), mgmt: fmt.Sprintf("127.0.0.1:%d", ports[1]), Log: filepath.Join(dir, "pebble.log")}
	ca, err := os.ReadFile(p.CAFile)
	if err != nil {
		return nil, err
	}
	p.trust = x509.NewCertPool()
	p.trust.AppendCertsFromPEM(ca)
	logf, err := os.Create(p.Log)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	args := []string{"-config", cf}
	if o.DNS != "" {
		args = append(args, "-dnsserver", o.DNS)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if p.done, err = startTied(p.cmd); err != nil {
		return nil, fmt.Errorf("start pebble: %w", err)
	}

	upstream, _ := url.Parse(fmt.Sprintf("https://127.0.0.1:%d", ports[0]))
	rp := httputil.NewSingleHostReverseProxy(upstream)
	rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.trust, ServerName: "localhost"}}
	p.proxy = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/order-plz" {
			p.Orders.Add(1)
			if f := p.OnOrder.Load(); f != nil {
				(*f)()
			}
		}
		rp.ServeHTTP(w, r)
	}))
	kp, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		p.Stop()
		return nil, err
	}
	p.proxy.TLS = &tls.Config{Certificates: []tls.Certificate{kp}}
	p.proxy.StartTLS()
	p.DirectoryURL = p.proxy.URL + "/dir"

	client := p.client()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(p.DirectoryURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("pebble not answering: %v: %s", err, fileTail(p.Log))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *Pebble) client() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.trust, ServerName: "localhost"}}}
}

// Root returns the PEM of the root of the chains Pebble issues (its
// management API's /roots/0): the only root a client of the issued
// certificates should trust.
func (p *Pebble) Root() ([]byte, error) {
	resp, err := p.client().Get("https://" + p.mgmt + "/roots/0")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("pebble /roots/0: %s", resp.Status)
	}
	return b, err
}

// Stop kills Pebble and closes the proxy.
func (p *Pebble) Stop() {
	if p.proxy != nil {
		p.proxy.Close()
	}
	if p.cmd != nil && p.cmd.Process != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		p.cmd = nil
	}
}
