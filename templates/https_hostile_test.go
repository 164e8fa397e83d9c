package templates_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/certs"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/records/recordstest"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/store"
)

// TestHTTPSHostileValues puts each corpus value into HTTPS_METHOD, HSTS
// and CERT_NAME of a raw record next to a good one, with real
// certificates in the store: the real nginx -t and haproxy -c accept every
// rendering of nginx.tmpl and haproxy.cfg.tmpl, no line is injected, the
// good host keeps its own certificate, and a value its check refuses is
// reported.
func TestHTTPSHostileValues(t *testing.T) {
	ca := testenv.NewCA(t)
	dir := t.TempDir()
	day := time.Now().Add(24 * time.Hour)
	for _, n := range []string{"good.localhost", "other.localhost", "default"} {
		ca.Issue(t, dir, n, n, day, n)
	}
	cs := certs.New(dir, certs.WithLogger(slog.New(slog.DiscardHandler)))
	cs.Scan()
	set, _ := cs.Current()
	nginxTm, err := dialect.Parse("nginx.conf.tmpl", dialect.Options{Dialect: dialect.Native, Includes: []string{"nginx.tmpl"}})
	if err != nil {
		t.Fatal(err)
	}
	haTm, err := dialect.Parse("haproxy.cfg.tmpl", dialect.Options{Dialect: dialect.Native})
	if err != nil {
		t.Fatal(err)
	}
	n := testenv.NewNginx(t)
	h := newHAProxy(t)
	good := records.Instance{ID: "good", Name: "good-1", Service: "web", Host: "h1", IP: "127.0.0.2", Port: 8080,
		State: records.StateRunning, Env: map[string]string{"VIRTUAL_HOST": "good.localhost"}}
	checks := map[string]func(string) error{"HTTPS_METHOD": certs.CheckMethod, "HSTS": certs.CheckHSTS, "CERT_NAME": certs.CheckCertName}
	for _, field := range []string{"HTTPS_METHOD", "HSTS", "CERT_NAME"} {
		for _, v := range recordstest.Corpus() {
			t.Run(field+"/"+v.Case, func(t *testing.T) {
				bad := records.Instance{ID: "bad", Name: "bad-1", Service: "zz-bad", Host: "h1", IP: "127.0.0.1", Port: 9,
					State: records.StateRunning, Env: map[string]string{"VIRTUAL_HOST": "other.localhost", field: v.Value}}
				var kvs []store.KV
				for _, in := range []records.Instance{good, bad} {
					b, _ := json.Marshal(in)
					kvs = append(kvs, store.KV{Key: records.ServiceKey("/berth", in.Service, in.Host, in.ID), Value: b})
				}
				var warnings []string
				warn := func(m string) { warnings = append(warnings, m) }
				var out bytes.Buffer
				env := map[string]string{"BERTH_NGINX_LISTEN": n.Addr, "BERTH_NGINX_GRPC_LISTEN": "127.0.0.1:1", "BERTH_NGINX_HTTPS_LISTEN": "127.0.0.1:1"}
				if err := nginxTm.Execute(&out, dialect.Input{KVs: kvs, Env: env, Certs: set, Warn: warn}); err != nil {
					t.Fatal(err)
				}
				p := parseConf(t, out.Bytes())
				if !slices.Contains(p.names, "good.localhost") || !slices.Contains(p.names, "other.localhost") {
					t.Fatalf("server names %q\n%s", p.names, out.Bytes())
				}
				if !bytes.Contains(out.Bytes(), []byte(`ssl_certificate "`+filepath.Join(dir, "good.localhost.crt")+`";`)) {
					t.Errorf("good.localhost lost its certificate\n%s", out.Bytes())
				}
				if err := checks[field](v.Value); err != nil && v.Value != "" && !(field == "HSTS" && v.Value == "off") {
					if !slices.ContainsFunc(warnings, func(w string) bool { return strings.Contains(w, field) }) {
						t.Errorf("%s %q refused (%v) without a warning: %q", field, v.Value, err, warnings)
					}
				}
				nginxT(t, n, out.Bytes())

				out.Reset()
				haEnv := map[string]string{"BERTH_HAPROXY_LISTEN": h.Addr, "BERTH_LIVE_DIR": h.Dir, "BERTH_HAPROXY_HTTPS_LISTEN": "127.0.0.1:1"}
				if err := haTm.Execute(&out, dialect.Input{KVs: kvs, Env: haEnv, Certs: set}); err != nil {
					t.Fatal(err)
				}
				haproxyBackends(t, out.Bytes())
				haproxyCheck(t, h, out.Bytes())
			})
		}
	}
}
