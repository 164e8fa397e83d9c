package daemon_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/daemon"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/registrar"
	"github.com/berthd/berth/registrar/consulcatalog"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/runtime/runtimetest"
	"github.com/berthd/berth/store/memstore"
)

// TestRegistryConsulCatalog: [registry] kind = "consul-catalog" registers
// the containers in the agent's catalog and leaves their records out of
// the store; with "kv" too, both have them. The token comes from
// token_file, the metrics count the services.
func TestRegistryConsulCatalog(t *testing.T) {
	c := testenv.StartConsul(t, testenv.WithConsulACL("root-token"))
	tokenFile := filepath.Join(t.TempDir(), "consul.token")
	if err := os.WriteFile(tokenFile, []byte("root-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cl, err := api.NewClient(&api.Config{Address: c.Addr, Token: c.Token})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		kinds   []string
		records bool
	}{
		{"catalog", []string{config.RegistryConsulCatalog}, false},
		{"both", []string{config.RegistryKV, config.RegistryConsulCatalog}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := runtimetest.New()
			ctr, _ := rt.Run(t.Context(), runtime.Spec{Name: "web", Image: "web", Env: []string{"SERVICE_NAME=web-" + tc.name},
				Publish: []runtime.Port{{Port: 80, Proto: "tcp", HostPort: 18080}}})
			st := memstore.New()
			host := "host-" + tc.name
			d, err := daemon.New(st, rt, daemon.Config{
				Registrar: registrar.Config{Host: host},
				Registry:  config.Registry{Kinds: tc.kinds, Address: c.Addr, TokenFile: tokenFile, CheckTTL: 6 * time.Second},
				Logger:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- d.Run(ctx, nil) }()
			t.Cleanup(func() { cancel(); <-done })
			id := consulcatalog.ServiceID(host, ctr.ID, 80, "tcp")
			deadline := time.Now().Add(30 * time.Second)
			for {
				h, _, err := cl.Health().Service("web-"+tc.name, "", true, nil)
				if err == nil && len(h) == 1 && h[0].Service.ID == id {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s not passing in the catalog: %v %v", id, h, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			_, err = st.Get(t.Context(), records.ServiceKey(records.DefaultPrefix, "web-"+tc.name, host, ctr.ID))
			if (err == nil) != tc.records {
				t.Errorf("instance record in the store: %v, want %v", err == nil, tc.records)
			}
			if _, err := st.Get(t.Context(), records.HostKey(records.DefaultPrefix, host)); err != nil {
				t.Errorf("host record: %v", err)
			}
			if _, body := get(t, d.Handler(), "/metrics"); !strings.Contains(body, "berth_catalog_services 1") {
				t.Errorf("metrics lack berth_catalog_services 1:\n%s", grepLines(body, "catalog"))
			}
		})
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
