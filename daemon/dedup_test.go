package daemon_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/daemon"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/store/etcd"
)

// TestDedupAcrossDaemons: two daemons on one etcd, each with the same
// template (dedup = true) in its own directory: both files are rendered,
// equal, from one leader's output under /berth/dedup/.
func TestDedupAcrossDaemons(t *testing.T) {
	ec := testenv.StartEtcd(t, 1)
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	var dests []string
	for i := range 2 {
		st, err := etcd.New(t.Context(), etcd.Config{Endpoints: []string{ec.Members[0].ClientURL}, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		dir := t.TempDir()
		src, dest := filepath.Join(dir, "list.tmpl"), filepath.Join(dir, "list.txt")
		if err := os.WriteFile(src, []byte(`{{range $k, $v := .Services}}{{$k}} {{len $v}}{{"\n"}}{{end}}`), 0o644); err != nil {
			t.Fatal(err)
		}
		tmpl, err := config.ParseTemplateFlag(src+":"+dest, dialect.Options{Dialect: dialect.Native})
		if err != nil {
			t.Fatal(err)
		}
		tmpl.Dedup = true
		// CertDir as berth up sets it: every template reads the certificate
		// store besides its dedup source.
		d, err := daemon.New(st, nil, daemon.Config{Logger: quiet, CertDir: filepath.Join(dir, "certs")})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx, []config.Template{tmpl}) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		})
		dests = append(dests, dest)
		if i == 0 {
			rec := `{"id":"a1","name":"a1","service":"api","host":"h1","ip":"10.0.0.1","port":80,"state":"running"}`
			if _, err := st.Put(t.Context(), "/berth/services/api/h1/a1", []byte(rec)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, dest := range dests {
		daemon.Eventually(t, "render "+dest, 20*time.Second, func() bool {
			b, _ := os.ReadFile(dest)
			return string(b) == "api 1\n"
		})
	}
	st, err := etcd.New(t.Context(), etcd.Config{Endpoints: []string{ec.Members[0].ClientURL}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	kvs, _, err := st.List(t.Context(), "/berth/dedup/")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range kvs {
		keys = append(keys, kv.Key[strings.LastIndexByte(kv.Key, '/'):])
	}
	if strings.Join(keys, ",") != "/leader,/output" {
		t.Fatalf("dedup keys %v, want one leader and one output", keys)
	}
}
