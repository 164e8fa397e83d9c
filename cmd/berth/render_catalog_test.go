package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/berthd/berth/internal/testenv"
)

// TestRenderCatalog: berth render and berth plan, one-shot as
// consul-template -once, execute a template reading the Consul catalog
// (service "web") from the agent --consul names, or the [catalog] of
// --config, or, without one, its consul-catalog [registry]'s agent.
func TestRenderCatalog(t *testing.T) {
	c := testenv.StartConsul(t)
	cl, err := api.NewClient(&api.Config{Address: c.Addr, Token: c.Token})
	if err != nil {
		t.Fatal(err)
	}
	for i, port := range []int{8081, 8082} {
		if err := cl.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "web-" + string(rune('a'+i)), Name: "web", Address: "10.0.0.1", Port: port}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "web.tmpl")
	os.WriteFile(tmpl, []byte(`{{ range service "web" }}server {{ .Address }}:{{ .Port }};
{{ end }}`), 0o644)
	const want = "server 10.0.0.1:8081;\nserver 10.0.0.1:8082;\n"
	store := "consul://" + c.Addr

	t.Run("--consul", func(t *testing.T) {
		code, out, errs := run(t, t.Context(), "", "render", "--store", store, "--consul", c.Addr, "--template", tmpl, "--stdout")
		if code != 0 || out != want {
			t.Fatalf("exit %d, stderr %s\ngot:\n%s\nwant:\n%s", code, errs, out, want)
		}
	})
	// One-shot does not wait out an outage: a query that fails (an agent
	// that does not answer, a datacenter it does not know) fails the
	// render, naming it.
	t.Run("agent down", func(t *testing.T) {
		code, _, errs := run(t, t.Context(), "", "render", "--store", store, "--consul", "127.0.0.1:1", "--template", tmpl, "--stdout")
		if code != 1 || !strings.Contains(errs, "127.0.0.1:1") {
			t.Fatalf("exit %d, stderr %s", code, errs)
		}
	})
	t.Run("datacenter", func(t *testing.T) {
		conf := filepath.Join(t.TempDir(), "berth.toml")
		os.WriteFile(conf, []byte("[registry]\nkind = \"consul-catalog\"\naddress = \""+c.Addr+"\"\ndatacenter = \"dc9\"\n"), 0o644)
		code, _, errs := run(t, t.Context(), "", "render", "--config", conf, "--store", store, "--template", tmpl, "--stdout")
		if code != 1 || !strings.Contains(errs, "No path to datacenter") {
			t.Fatalf("exit %d, stderr %s", code, errs)
		}
	})
	t.Run("without a catalog", func(t *testing.T) {
		code, _, errs := run(t, t.Context(), "", "render", "--store", store, "--template", tmpl, "--stdout")
		if code != 1 || !strings.Contains(errs, "no Consul catalog is configured") {
			t.Fatalf("exit %d, stderr %s", code, errs)
		}
	})
	for _, tc := range []struct{ name, table string }{
		{"[catalog]", "[catalog]\naddress = \"" + c.Addr + "\"\n"},
		{"[registry]", "[registry]\nkind = \"consul-catalog\"\naddress = \"" + c.Addr + "\"\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "web.conf")
			conf := filepath.Join(t.TempDir(), "berth.toml")
			os.WriteFile(conf, []byte(tc.table+"[store]\nurl = \""+store+"\"\n[[template]]\nsrc = \""+tmpl+"\"\ndest = \""+out+"\"\n"), 0o644)
			// plan: the diff, exit 2 (something would change).
			code, diff, errs := run(t, t.Context(), "", "plan", "--config", conf)
			if code != 2 || !strings.Contains(diff, "+server 10.0.0.1:8082;") {
				t.Fatalf("plan: exit %d, stderr %s\n%s", code, errs, diff)
			}
			// render: the file.
			if code, _, errs := run(t, t.Context(), "", "render", "--config", conf); code != 0 {
				t.Fatalf("render: exit %d, stderr %s", code, errs)
			}
			if b, _ := os.ReadFile(out); string(b) != want {
				t.Fatalf("rendered:\n%s\nwant:\n%s", b, want)
			}
			if code, _, errs := run(t, t.Context(), "", "render", "--config", conf, "--dry-run", "--exit-code"); code != 0 {
				t.Fatalf("dry run after the render: exit %d, stderr %s", code, errs)
			}
		})
	}
}

// TestRenderDaemonCatalog: pointed at a daemon (-H), berth render reads
// the catalog of the daemon's [catalog] agent, as it uses the daemon's
// store.
func TestRenderDaemonCatalog(t *testing.T) {
	c := testenv.StartConsul(t)
	cl, err := api.NewClient(&api.Config{Address: c.Addr, Token: c.Token})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Agent().ServiceRegister(&api.AgentServiceRegistration{ID: "web-a", Name: "web", Address: "10.0.0.1", Port: 8081}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tmpl := filepath.Join(dir, "web.tmpl")
	os.WriteFile(tmpl, []byte(`{{ range service "web" }}server {{ .Address }}:{{ .Port }};{{ end }}`), 0o644)
	conf := filepath.Join(dir, "berth.toml")
	os.WriteFile(conf, []byte("[catalog]\naddress = \""+c.Addr+"\"\n[[template]]\nsrc = \""+tmpl+"\"\ndest = \""+filepath.Join(dir, "web.conf")+"\"\n"), 0o644)
	sock := startDaemonWith(t, "--config", conf)
	code, out, errs := run(t, t.Context(), "", "render", "-H", sock, "--template", tmpl, "--stdout")
	if code != 0 || out != "server 10.0.0.1:8081;" {
		t.Fatalf("exit %d, stderr %s\n%s", code, errs, out)
	}
}
