package templates_test

import (
	"bytes"
	"cmp"
	"flag"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/templates"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// renderWith renders a shipped template over a fixture with env.
func renderWith(t *testing.T, main string, includes []string, fixture string, env map[string]string) []byte {
	t.Helper()
	tm, err := dialect.Parse(main, dialect.Options{Dialect: dialect.Native, Includes: includes})
	if err != nil {
		t.Fatal(err)
	}
	fx, err := render.ReadFixture(fixture)
	if err != nil {
		t.Fatal(err)
	}
	in := fx.Input([]string{"/berth/services/"})
	in.Env = env
	var buf bytes.Buffer
	if err := tm.Execute(&buf, in); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestGolden(t *testing.T) {
	cases := []struct {
		name, fixture string
		env           map[string]string
		src           string // nginx.tmpl if empty
	}{
		{"mixed", "mixed.json", map[string]string{}, ""},
		{"empty", "empty.json", map[string]string{}, ""},
		{"ipv6", "ipv6.json", map[string]string{}, ""}, // [addr]:port
		{"settings", "mixed.json", map[string]string{"BERTH_NGINX_LISTEN": "127.0.0.1:8080", "BERTH_NGINX_GRPC_LISTEN": "127.0.0.1:8081", "BERTH_NGINX_KEEPALIVE": "8"}, ""},
		{"lua-static", "mixed.json", map[string]string{}, "nginx-lua.tmpl"},
		{"lua-live", "mixed.json", liveEnv("/run/berth/live/nginx"), "nginx-lua.tmpl"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := renderWith(t, cmp.Or(tc.src, "nginx.tmpl"), nil, filepath.Join("testdata", tc.fixture), tc.env)
			golden := filepath.Join("testdata", "golden", tc.name+".golden")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./templates -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s over %s differs from %s:\n%s", cmp.Or(tc.src, "nginx.tmpl"), tc.fixture, golden, render.Diff(golden, "rendered", want, got))
			}
		})
	}
}

// TestNginxAcceptsOutput runs the real nginx -t over every rendering,
// wrapped into a whole nginx.conf by nginx.conf.tmpl.
func TestNginxAcceptsOutput(t *testing.T) {
	for _, fixture := range []string{"mixed.json", "empty.json", "ipv6.json"} {
		t.Run(fixture, func(t *testing.T) {
			n := testenv.NewNginx(t)
			env := map[string]string{"BERTH_NGINX_LISTEN": n.Addr, "BERTH_NGINX_GRPC_LISTEN": "127.0.0.1:1"}
			conf := renderWith(t, "nginx.conf.tmpl", []string{"nginx.tmpl"}, filepath.Join("testdata", fixture), env)
			if err := os.WriteFile(n.Conf, conf, 0o644); err != nil {
				t.Fatal(err)
			}
			check := strings.ReplaceAll(n.CheckCommand(), "{{.src}}", n.Conf)
			out, err := render.Exec{}.Run(t.Context(), []string{"/bin/sh", "-c", check})
			if err != nil {
				t.Fatalf("nginx -t rejects the rendered config: %v\n%s\n%s", err, out, conf)
			}
		})
	}
}

func TestEmbedded(t *testing.T) {
	for _, name := range []string{"nginx.tmpl", "nginx.conf.tmpl", "nginx-lua.tmpl", "berth_live.lua"} {
		b, err := fs.ReadFile(templates.Files(), name)
		if err != nil {
			t.Fatal(err)
		}
		disk, _ := os.ReadFile(name)
		if !bytes.Equal(b, disk) {
			t.Fatalf("embedded %s differs from the file", name)
		}
	}
}

// TestProtocolConflictWarns: two containers claiming one host and path
// with different protocols: the second is left out of the config (a
// comment says so) and reported through {{warn}}, which the daemon logs.
func TestProtocolConflictWarns(t *testing.T) {
	tm, err := dialect.Parse("nginx.tmpl", dialect.Options{Dialect: dialect.Native})
	if err != nil {
		t.Fatal(err)
	}
	fx, err := render.ReadFixture(filepath.Join("testdata", "mixed.json"))
	if err != nil {
		t.Fatal(err)
	}
	in := fx.Input([]string{"/berth/services/"})
	in.Env = map[string]string{}
	var warnings []string
	in.Warn = func(m string) { warnings = append(warnings, m) }
	if err := tm.Execute(io.Discard, in); err != nil {
		t.Fatal(err)
	}
	want := "rpc.localhost/ is served over grpc; container rpc-2 (fff) asks for http with VIRTUAL_PROTO and is left out"
	if len(warnings) != 1 || warnings[0] != want {
		t.Errorf("warnings %q\nwant [%q]", warnings, want)
	}
}
