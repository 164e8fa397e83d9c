package daemon_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/acme"
	"github.com/berthd/berth/config"
	"github.com/berthd/berth/daemon"
	"github.com/berthd/berth/internal/realparts"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/store/memstore"
)

// With [acme] pointing at a CA that does not answer, the daemon stays up
// and healthy, the templates render (plain HTTP keeps working) and see
// BERTH_ACME_CHALLENGE, the responder answers there, and the retries show
// in berth_acme_* metrics.
func TestACMEUnreachableDaemonKeepsServing(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := l.Addr().String()
	l.Close()
	st := memstore.New()
	defer st.Close()
	dir := t.TempDir()
	src, dest := filepath.Join(dir, "t.tmpl"), filepath.Join(dir, "out.txt")
	if err := os.WriteFile(src, []byte(`{{env "BERTH_ACME_CHALLENGE"}}{{range $k, $v := .Services}} {{$k}}{{end}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tmpl, err := config.ParseTemplateFlag(src+":"+dest, dialect.Options{Dialect: dialect.Native})
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	d, err := daemon.New(st, nil, daemon.Config{Logger: quiet, StallAfter: 2 * time.Second, ACME: &acme.Config{
		DirectoryURL: "https://" + down + "/dir", Storage: filepath.Join(dir, "acme"), CertsDir: filepath.Join(dir, "certs"),
		RetryMin: 100 * time.Millisecond, RetryMax: 500 * time.Millisecond,
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, []config.Template{tmpl}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	rec := `{"id":"a1","name":"a1","service":"web","host":"h1","ip":"10.0.0.1","port":80,"state":"running","env":{"LETSENCRYPT_HOST":"web.example.com"}}`
	if _, err := st.Put(t.Context(), "/berth/services/web/h1/a1", []byte(rec)); err != nil {
		t.Fatal(err)
	}
	var addr string
	daemon.Eventually(t, "render with the challenge address", 10*time.Second, func() bool {
		b, _ := os.ReadFile(dest)
		addr, _, _ = strings.Cut(string(b), " ")
		return strings.HasSuffix(string(b), " web") && strings.HasPrefix(addr, "127.0.0.1:")
	})
	resp, err := http.Get("http://" + addr + acme.ChallengePath + "unknown-token")
	if err != nil {
		t.Fatalf("the challenge responder at BERTH_ACME_CHALLENGE=%s: %v", addr, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown token: %d", resp.StatusCode)
	}
	h := d.Handler()
	daemon.Eventually(t, "retries in the metrics", 10*time.Second, func() bool {
		_, body := get(t, h, "/metrics")
		return strings.Contains(body, `berth_acme_failures_total{scope="account"}`) && !strings.Contains(body, `berth_acme_failures_total{scope="account"} 1`+"\n")
	})
	time.Sleep(3 * time.Second) // past StallAfter: still healthy
	if code, body := get(t, h, "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz with the CA down: %d %s", code, body)
	}
	s, ok := d.ACME()
	if !ok || len(s.Accounts) != 1 || !strings.Contains(s.Accounts[0].LastError, down) {
		t.Errorf("ACME status %+v", s)
	}
}

// berth up's wiring end to end: the daemon renders an nginx.conf that
// routes the challenge to BERTH_ACME_CHALLENGE, Pebble validates through
// that nginx, and a record with LETSENCRYPT_HOST gets its certificate in
// the certificate directory; metrics and the daemon's ACME status show it.
func TestACMEThroughTheDaemon(t *testing.T) {
	n := testenv.NewNginx(t)
	_, port, _ := net.SplitHostPort(n.Addr)
	httpPort, _ := strconv.Atoi(port)
	dnsSrv := testenv.StartDNS(t)
	pb := testenv.StartPebble(t, realparts.PebbleOptions{DNS: dnsSrv.Addr, HTTPPort: httpPort})

	dir := t.TempDir()
	src := filepath.Join(dir, "nginx.tmpl")
	if err := os.WriteFile(src, []byte(n.Prelude()+`    server {
        listen `+n.Addr+` default_server;
        location ^~ /.well-known/acme-challenge/ { proxy_pass http://{{ env "BERTH_ACME_CHALLENGE" }}; }
        location / { return 200 "plain {{ len .Services }}\n"; }
    }
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	tmpl := config.Template{Name: "nginx", Src: src, Origin: "test",
		Options:  dialect.Options{Dialect: dialect.Native, Prefix: records.DefaultPrefix},
		Prefixes: []string{records.ServicesPrefix(records.DefaultPrefix)},
		Spec: render.Spec{Name: "nginx", Dest: n.Conf, Check: n.CheckCommand(),
			Reload: fmt.Sprintf("if [ -s %[1]s/nginx.pid ]; then kill -HUP $(cat %[1]s/nginx.pid); fi", n.Dir)}}
	st := memstore.New()
	defer st.Close()
	certs := filepath.Join(dir, "certs")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	d, err := daemon.New(st, nil, daemon.Config{Logger: quiet, ACME: &acme.Config{
		DirectoryURL: pb.DirectoryURL, CAFile: pb.CAFile, Email: "ops@example.com",
		Storage: filepath.Join(dir, "acme"), CertsDir: certs, RetryMin: time.Second,
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, []config.Template{tmpl}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	daemon.Eventually(t, "the first nginx.conf", 10*time.Second, func() bool {
		b, _ := os.ReadFile(n.Conf)
		return strings.Contains(string(b), "proxy_pass http://127.0.0.1:")
	})
	n.Start(t)

	rec := `{"id":"a1","name":"a1","service":"web","host":"h1","ip":"10.0.0.1","port":80,"state":"running","env":{"VIRTUAL_HOST":"daemon.example.com","LETSENCRYPT_HOST":"daemon.example.com"}}`
	if _, err := st.Put(t.Context(), "/berth/services/web/h1/a1", []byte(rec)); err != nil {
		t.Fatal(err)
	}
	daemon.Eventually(t, "the certificate", 60*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(certs, "daemon.example.com.crt"))
		return err == nil
	})
	if code, body, err := n.Get("daemon.example.com", "/"); err != nil || code != 200 || strings.TrimSpace(body) != "plain 1" {
		t.Errorf("plain HTTP through nginx: %d %q %v", code, body, err)
	}
	_, metrics := get(t, d.Handler(), "/metrics")
	for _, want := range []string{`berth_acme_orders_total{result="issued"} 1`, "berth_acme_certificates 1", "berth_acme_leader 1"} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if s, _ := d.ACME(); len(s.Certificates) != 1 || s.Certificates[0].Host != "daemon.example.com" {
		t.Errorf("ACME status %+v", s)
	}
	if n := pb.Orders.Load(); n != 1 {
		t.Errorf("%d orders, want 1", n)
	}
}

// ACMETemplateEnv gives a render outside berth up the challenge address
// berth up uses: challenge_listen, else the one it keeps in the storage.
func TestACMETemplateEnv(t *testing.T) {
	state := t.TempDir()
	if err := os.MkdirAll(filepath.Join(state, "acme"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "acme", "challenge-listen"), []byte("127.0.0.1:41234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	on := "https://ca.example/dir"
	cases := []struct {
		name string
		env  map[string]string
		c    config.ACME
		want string // "": not set
	}{
		{"acme off", map[string]string{}, config.ACME{}, ""},
		{"remembered", map[string]string{}, config.ACME{DirectoryURL: on}, "127.0.0.1:41234"},
		{"challenge_listen", map[string]string{}, config.ACME{DirectoryURL: on, ChallengeListen: "127.0.0.1:8402"}, "127.0.0.1:8402"},
		{"set already", map[string]string{daemon.EnvACMEChallenge: "127.0.0.1:9"}, config.ACME{DirectoryURL: on}, "127.0.0.1:9"},
		{"never ran", map[string]string{}, config.ACME{DirectoryURL: on, Storage: t.TempDir()}, ""},
	}
	for _, tc := range cases {
		got := daemon.ACMETemplateEnv(tc.env, tc.c, state)[daemon.EnvACMEChallenge]
		if got != tc.want {
			t.Errorf("%s: BERTH_ACME_CHALLENGE %q, want %q", tc.name, got, tc.want)
		}
	}
}
