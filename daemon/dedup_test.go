package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
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
	for _, peers := range []bool{false, true} {
		t.Run(fmt.Sprintf("peers=%t", peers), func(t *testing.T) { testDedupAcrossDaemons(t, peers) })
	}
}

func testDedupAcrossDaemons(t *testing.T, peers bool) {
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
		cfg := daemon.Config{Logger: quiet, CertDir: filepath.Join(dir, "certs")}
		if peers {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			cfg.DedupListener = ln
		}
		d, err := daemon.New(st, nil, cfg)
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
		k := kv.Key[strings.LastIndexByte(kv.Key, '/'):]
		if strings.Contains(kv.Key, "/followers/") {
			k = "/followers/*"
		}
		if k == "/leader" {
			var l struct{ URL string }
			if err := json.Unmarshal(kv.Value, &l); err != nil || (l.URL != "") != peers {
				t.Errorf("lock record %s (%v): url %q, serving peer to peer %t", kv.Value, err, l.URL, peers)
			}
		}
		keys = append(keys, k)
	}
	// Peer to peer, the one follower registers and fetches the output from
	// the leader, who stores it only if the follower had not fetched it
	// within a second (package dedup's tests show when).
	got := strings.Join(keys, ",")
	switch {
	case !peers && got == "/leader,/output":
	case peers && (got == "/followers/*,/leader" || got == "/followers/*,/leader,/output"):
	default:
		t.Fatalf("dedup keys %v (serving peer to peer %t)", keys, peers)
	}
}
