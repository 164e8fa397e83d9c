package dialect_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/store"
)

// confdSnapshot is what a confd user would have put in etcd for the
// resources in testdata/confd.
var confdSnapshot = map[string]string{
	"/shop/settings/name":              "shop",
	"/shop/settings/maxconn_per_proc":  "4096",
	"/shop/settings/procs":             "2",
	"/shop/settings/debug":             "true",
	"/shop/settings/timeouts/connect":  "3s",
	"/shop/settings/timeouts/server":   "30s",
	"/shop/settings/banner_b64":        "d2VsY29tZQ==",
	"/shop/settings/extra_ports":       `["8404", "8405"]`,
	"/shop/settings/admins/a":          "admin:secret",
	"/shop/settings/admins/b":          "ops:hunter2",
	"/shop/frontends/HTTP":             `{"bind": ":80", "hosts": "shop.example.org,*.example.org", "backend": "web"}`,
	"/shop/frontends/api":              `{"bind": ":8080", "hosts": "api.example.org", "backend": "api"}`,
	"/shop/backends/web/balance":       "leastconn",
	"/shop/backends/web/backup":        "yes",
	"/shop/backends/web/servers/web1":  "10.0.0.1:80",
	"/shop/backends/web/servers/web2":  "10.0.0.2:80",
	"/shop/backends/web/servers/web10": "10.0.0.10:8080",
	"/shop/backends/api/servers/api1":  "10.0.1.1:9000",
	"/shop/unrelated/key":              "not in any of the resource's keys",
	"/motd/host":                       "berth-01",
	"/motd/lines/1":                    "Be nice.",
	"/motd/lines/2":                    "Back up often.",
}

// TestConfdDirectory loads a confd conf.d directory with berth's loader and
// renders its templates, which use every confd function, unmodified.
func TestConfdDirectory(t *testing.T) {
	ts, err := config.LoadConfd(filepath.Join("testdata", "confd"), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 {
		t.Fatalf("loaded %d resources, want 2", len(ts))
	}
	for _, ct := range ts {
		t.Run(ct.Name, func(t *testing.T) {
			tm, err := dialect.Parse(ct.Src, ct.Options)
			if err != nil {
				t.Fatal(err)
			}
			var kvs []store.KV
			for _, k := range sortedKeys(confdSnapshot) {
				for _, p := range ct.Prefixes {
					if strings.HasPrefix(k, p) {
						kvs = append(kvs, store.KV{Key: k, Value: []byte(confdSnapshot[k])})
						break
					}
				}
			}
			var out bytes.Buffer
			if err := tm.Execute(&out, dialect.Input{KVs: kvs, Env: map[string]string{}}); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "golden", "confd-dir", ct.Name+".golden")
			if updateFlag() {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), want) {
				t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", golden, out.Bytes(), want)
			}
		})
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// updateFlag reports the -update flag the package's internal tests define.
func updateFlag() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}
