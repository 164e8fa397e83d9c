package templates_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthd/berth/endpoints/nginxlua"
	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/render"
)

// liveEnv is the environment berth renders a live = "nginx-lua" template
// with.
func liveEnv(dir string) map[string]string {
	return map[string]string{"BERTH_LIVE": "nginx-lua", "BERTH_LIVE_DIR": dir}
}

// rewriteFixture writes mixed.json changed by edit (key → instance JSON;
// "" deletes the key) and returns its path.
func rewriteFixture(t *testing.T, edit map[string]string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "mixed.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range edit {
		if v == "" {
			delete(m, k)
		} else {
			m[k] = json.RawMessage(v)
		}
	}
	out, _ := json.Marshal(m)
	p := filepath.Join(t.TempDir(), "fixture.json")
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLiveStructureIgnoresMembership: instances starting, draining,
// stopping and changing weight or address leave the live rendering
// byte-identical (so berth neither checks nor reloads), while the static
// rendering changes; a new host name changes both.
func TestLiveStructureIgnoresMembership(t *testing.T) {
	base := filepath.Join("testdata", "mixed.json")
	membership := map[string]map[string]string{
		"start": {"/berth/services/web/h3/hhh": `{"id":"hhh","name":"web-4","service":"web","host":"h3","ip":"10.1.0.9","port":8080,"env":{"VIRTUAL_HOST":"whoami.localhost"},"state":"running","weight":1}`},
		"drain": {"/berth/services/web/h1/aaa": `{"id":"aaa","name":"web-1","service":"web","host":"h1","ip":"10.1.0.2","port":8080,"env":{"VIRTUAL_HOST":"whoami.localhost, www.localhost"},"state":"draining"}`},
		"stop":  {"/berth/services/web/h2/bbb": ""},
		"move":  {"/berth/services/api/h1/ddd": `{"id":"ddd","name":"api-1","service":"api","host":"h1","ip":"10.1.0.55","port":9001,"env":{"VIRTUAL_HOST":"whoami.localhost","VIRTUAL_PATH":"/api/"},"state":"running","weight":5}`},
	}
	live := liveEnv("/run/berth/live/nginx")
	wantLive := renderWith(t, "nginx-lua.tmpl", nil, base, live)
	wantStatic := renderWith(t, "nginx-lua.tmpl", nil, base, map[string]string{})
	for name, edit := range membership {
		t.Run(name, func(t *testing.T) {
			fx := rewriteFixture(t, edit)
			if got := renderWith(t, "nginx-lua.tmpl", nil, fx, live); !bytes.Equal(got, wantLive) {
				t.Errorf("live rendering changed:\n%s", render.Diff("before", "after", wantLive, got))
			}
			if got := renderWith(t, "nginx-lua.tmpl", nil, fx, map[string]string{}); bytes.Equal(got, wantStatic) {
				t.Errorf("static rendering did not change: the membership edit is not one")
			}
		})
	}
	t.Run("new host", func(t *testing.T) {
		fx := rewriteFixture(t, map[string]string{"/berth/services/web/h3/hhh": `{"id":"hhh","name":"web-4","service":"web","host":"h3","ip":"10.1.0.9","port":8080,"env":{"VIRTUAL_HOST":"new.localhost"},"state":"running","weight":1}`})
		if got := renderWith(t, "nginx-lua.tmpl", nil, fx, live); !bytes.Contains(got, []byte("server_name new.localhost;")) {
			t.Errorf("a new host is not in the live structure:\n%s", got)
		}
	})
}

// TestNginxAcceptsLiveOutput runs the real nginx -t (with Debian's Lua
// module) over both renderings wrapped by nginx.conf.tmpl: the live one
// loads the module and berth_live.lua from the live directory.
func TestNginxAcceptsLiveOutput(t *testing.T) {
	if err := nginxlua.CheckModule(""); err != nil {
		t.Fatal(err)
	}
	for _, live := range []bool{false, true} {
		t.Run(map[bool]string{false: "static", true: "live"}[live], func(t *testing.T) {
			n := testenv.NewNginx(t)
			env := map[string]string{"BERTH_NGINX_LISTEN": n.Addr, "BERTH_NGINX_GRPC_LISTEN": "127.0.0.1:1"}
			if live {
				sink, err := nginxlua.New(filepath.Join(n.Dir, "live"))
				if err != nil {
					t.Fatal(err)
				}
				for k, v := range liveEnv(sink.Dir()) {
					env[k] = v
				}
			}
			conf := renderWith(t, "nginx.conf.tmpl", []string{"nginx-lua.tmpl"}, filepath.Join("testdata", "mixed.json"), env)
			if live != strings.Contains(string(conf), "load_module") {
				t.Fatalf("load_module in a %v rendering:\n%s", live, conf)
			}
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
