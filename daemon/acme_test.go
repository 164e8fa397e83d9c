package daemon_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/acme"
	"github.com/berthd/berth/config"
	"github.com/berthd/berth/daemon"
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
