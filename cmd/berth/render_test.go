package main

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/backend"
	"github.com/berthd/berth/store/env"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files of berth render in render/testdata/oneshot")

// oneshot is the directory of the one-shot fixtures and golden files.
const oneshot = "../../render/testdata/oneshot"

func fixture(name string) string { return filepath.Join(oneshot, name) }

// golden compares got with the golden file, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	p := fixture(name)
	if *updateGolden {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s:\n--- got\n%s\n--- want\n%s", p, got, want)
	}
}

// TestRenderContext renders each dialect from a --context fixture to
// standard output; the confd directory uses every confd function and runs
// unmodified.
func TestRenderContext(t *testing.T) {
	t.Setenv("BERTH_TEST_CONFD_VAR", "hello")
	tests := []struct {
		name, golden string
		args         []string
	}{
		{"confd", "confd.golden", []string{"--confdir", fixture("confd"), "--context", fixture("confd.json")}},
		{"native", "native.golden", []string{"--template", fixture("upstreams.tmpl"), "--context", fixture("native.json")}},
		{"docker-gen", "dockergen.golden", []string{"--template", fixture("vhosts.tmpl"), "--dialect", "docker-gen", "--context", fixture("containers.json")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := run(t, t.Context(), "", append([]string{"render", "--stdout"}, tc.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			golden(t, tc.golden, out)
		})
	}
}

// TestRenderWrite is the one-shot write path: write, unchanged, dry-run
// diff, and the exit codes of the failures.
func TestRenderWrite(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "upstreams.conf")
	log := filepath.Join(dir, "reload.log")
	tmpl := fixture("upstreams.tmpl")
	spec := tmpl + ":" + dest + ":echo reload >> " + log
	ctx := t.Context()

	code, _, errs := run(t, ctx, "", "render", "--template", spec, "--context", fixture("native.json"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	want, _ := os.ReadFile(fixture("native.golden"))
	if got := readFile(t, dest); got != string(want) {
		t.Fatalf("dest:\n%s\nwant:\n%s", got, want)
	}
	// Unchanged: exit 0, no reload.
	if code, _, errs := run(t, ctx, "", "render", "--template", spec, "--context", fixture("native.json")); code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if got := readFile(t, log); got != "reload\n" {
		t.Errorf("reload log %q, want one reload", got)
	}

	// --dry-run of the current output: no diff.
	if code, out, errs := run(t, ctx, "", "render", "--dry-run", "--template", spec, "--context", fixture("native.json")); code != 0 || out != "" || !strings.Contains(errs, "unchanged") {
		t.Errorf("dry-run, unchanged: exit %d, stdout %q, stderr %q", code, out, errs)
	}

	// --dry-run: a unified diff against the destination, nothing written.
	changed := filepath.Join(dir, "changed.json")
	data := strings.Replace(readFile(t, fixture("native.json")), `"16m"`, `"32m"`, 1)
	os.WriteFile(changed, []byte(data), 0o644)
	code, out, errs := run(t, ctx, "", "render", "--dry-run", "--template", spec, "--context", changed)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	wantDiff := "--- " + dest + "\n+++ " + dest + " (rendered)\n@@ -6,4 +6,4 @@\n" +
		"     server 10.1.0.2:8080;\n     server 10.1.0.3:8080 down;\n }\n-client_max_body_size 16m;\n+client_max_body_size 32m;\n"
	if out != wantDiff {
		t.Errorf("dry-run diff:\n%s\nwant:\n%s", out, wantDiff)
	}
	if got := readFile(t, dest); got != string(want) {
		t.Error("--dry-run wrote the destination")
	}
	// --dry-run of a new file diffs against /dev/null.
	code, out, _ = run(t, ctx, "", "render", "--dry-run", "--template", tmpl+":"+filepath.Join(dir, "new.conf"), "--context", changed)
	if code != 0 || !strings.HasPrefix(out, "--- /dev/null\n") || !strings.Contains(out, "@@ -0,0 +1,9 @@") {
		t.Errorf("dry-run of a new file: exit %d\n%s", code, out)
	}
}

// TestRenderDryRunExitCode: render --dry-run --exit-code answers a script:
// 0 nothing would change, 2 something would, 1 on any error (a usage
// error too, so that 2 means only "would change"); nothing is written.
func TestRenderDryRunExitCode(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "upstreams.conf")
	tmpl := fixture("upstreams.tmpl")
	ctx := t.Context()
	if code, _, errs := run(t, ctx, "", "render", "--template", tmpl+":"+dest, "--context", fixture("native.json")); code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	want := readFile(t, dest)
	changed := filepath.Join(dir, "changed.json")
	data := strings.Replace(readFile(t, fixture("native.json")), `"16m"`, `"32m"`, 1)
	if err := os.WriteFile(changed, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(dir, "reloaded")
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string // contained
		stderr string // contained
	}{
		{"nothing would change", []string{"--template", tmpl + ":" + dest + ":touch " + marker, "--context", fixture("native.json")}, 0, "", "unchanged"},
		{"the content would change", []string{"--template", tmpl + ":" + dest + ":touch " + marker, "--context", changed}, 2, "+client_max_body_size 32m;", ""},
		{"a new file", []string{"--template", tmpl + ":" + filepath.Join(dir, "new.conf"), "--context", changed}, 2, "--- /dev/null", ""},
		{"one of two would change", []string{"--template", tmpl + ":" + dest, "--template", tmpl + ":" + filepath.Join(dir, "new.conf"), "--context", fixture("native.json")}, 2, "+++ " + filepath.Join(dir, "new.conf"), "unchanged"},
		{"a render error", []string{"--template", fixture("upstreams.tmpl") + ":" + dir, "--context", changed}, 1, "", "is a directory"},
		{"a usage error", []string{"--template", tmpl, "--context", changed}, 1, "", "no destination"},
		{"a bad flag", []string{"--template", tmpl + ":" + dest, "--nosuchflag"}, 1, "", "unknown flag"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"render", "--dry-run", "--exit-code"}, tc.args...)
			code, out, errs := run(t, ctx, "", args...)
			if code != tc.code || !strings.Contains(out, tc.stdout) || !strings.Contains(errs, tc.stderr) {
				t.Errorf("exit %d stdout %q stderr %q; want exit %d, stdout containing %q, stderr containing %q", code, out, errs, tc.code, tc.stdout, tc.stderr)
			}
		})
	}
	if got := readFile(t, dest); got != want {
		t.Error("--dry-run --exit-code wrote the destination")
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("--dry-run --exit-code ran the reload")
	}
	if _, err := os.Stat(filepath.Join(dir, "new.conf")); err == nil {
		t.Error("--dry-run --exit-code created a file")
	}
	if code, _, errs := run(t, ctx, "", "render", "--exit-code", "--template", tmpl+":"+dest, "--context", changed); code != 1 || !strings.Contains(errs, "--exit-code needs --dry-run") {
		t.Errorf("--exit-code without --dry-run: exit %d %s", code, errs)
	}
	if code, _, errs := run(t, ctx, "", "render", "--template", tmpl, "--context", changed); code != 2 || !strings.Contains(errs, "no destination") {
		t.Errorf("without --exit-code a usage error exits 2: exit %d %s", code, errs)
	}
}

// TestRenderBuiltin: berth render uses the shipped templates out of the
// binary (builtin:NAME in --template and in berth.toml), rendering what
// the source tree's files render; an unknown name lists the shipped ones.
func TestRenderBuiltin(t *testing.T) {
	dir := t.TempDir()
	rec := `{"id":"abc","name":"web-1","service":"web","host":"h1","ip":"10.1.0.2","port":80,"image":"web","env":{"VIRTUAL_HOST":"web.localhost"},"health":"none","state":"running","weight":1,"started_at":"2026-01-01T00:00:00Z"}`
	fx := filepath.Join(dir, "fixture.json")
	data, _ := json.Marshal(map[string]string{"/berth/services/web/h1/abc": rec})
	if err := os.WriteFile(fx, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	render := func(args ...string) string {
		t.Helper()
		code, out, errs := run(t, ctx, "", append([]string{"render", "--context", fx}, args...)...)
		if code != 0 {
			t.Fatalf("berth render %s: exit %d: %s", strings.Join(args, " "), code, errs)
		}
		return out
	}
	fromTree := render("--stdout", "--template", "../../templates/nginx.tmpl")
	if !strings.Contains(fromTree, "server_name web.localhost;") {
		t.Fatalf("the source tree's nginx.tmpl rendered:\n%s", fromTree)
	}
	if got := render("--stdout", "--template", "builtin:nginx"); got != fromTree {
		t.Errorf("builtin:nginx rendered:\n%s\nwant what templates/nginx.tmpl renders:\n%s", got, fromTree)
	}
	conf := filepath.Join(dir, "berth.toml")
	if err := os.WriteFile(conf, []byte("[[template]]\nsrc = \"builtin:nginx.conf\"\nincludes = [\"builtin:nginx\"]\ndest = \"nginx.conf\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	render("--config", conf)
	if got := readFile(t, filepath.Join(dir, "nginx.conf")); !strings.Contains(got, "http {") || !strings.Contains(got, "server_name web.localhost;") {
		t.Errorf("builtin:nginx.conf with builtin:nginx wrote:\n%s", got)
	}
	code, _, errs := run(t, ctx, "", "render", "--context", fx, "--template", "builtin:apache:"+filepath.Join(dir, "x"))
	if code != 2 || !strings.Contains(errs, `unknown builtin template "builtin:apache": berth ships builtin:haproxy.cfg, builtin:nginx, builtin:nginx-lua, builtin:nginx.conf`) {
		t.Errorf("unknown builtin: exit %d %s", code, errs)
	}
}

// TestRenderErrors: each bad input exits with its code, says what is wrong,
// and leaves the destination untouched.
func TestRenderErrors(t *testing.T) {
	dir := t.TempDir()
	dest := filepath.Join(dir, "out.conf")
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	kv := write("kv.json", `{"/berth/config/bad": "{not json", "/berth/config/x": "1"}`)
	syntax := write("syntax.tmpl", "line one\n{{ if }}\n")
	unknownFn := write("unknown.tmpl", "{{ nosuchfunc 1 }}\n")
	missing := write("missing.tmpl", "{{ .Env.BERTH_SURELY_UNSET_VARIABLE }}\n")
	badJSON := write("json.tmpl", "{{ (keyOrDefault \"/berth/config/bad\" \"\" | mustFromJson).a }}\n")
	good := write("good.tmpl", "{{ key \"/berth/config/x\" }}\n")
	unknownKey := write("berth.toml", "[[template]]\nsrc = \""+good+"\"\ndest = \""+dest+"\"\nreload_cmd = \"x\"\n")
	missingKeyConf := write("missingkey.toml", "[[template]]\nsrc = \""+missing+"\"\ndest = \""+dest+"\"\nmissingkey = \"error\"\n")

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"syntax error", []string{"--template", syntax + ":" + dest}, 1, "syntax.tmpl:2:"},
		{"unknown function", []string{"--template", unknownFn + ":" + dest}, 1, `unknown function "nosuchfunc"`},
		{"every parse error", []string{"--template", unknownFn + ":" + dest, "--template", syntax + ":" + dest + ".2"}, 1, "syntax.tmpl:2:"},
		{"missing key", []string{"--config", missingKeyConf}, 1, "BERTH_SURELY_UNSET_VARIABLE"},
		{"malformed JSON", []string{"--template", badJSON + ":" + dest}, 1, "json.tmpl:1:"},
		{"min_entries", []string{"--context", fixture("containers.json"), "--config", write("guard.toml", "[[template]]\nsrc = \""+abs(t, fixture("vhosts.tmpl"))+"\"\ndest = \""+dest+"\"\ndialect = \"docker-gen\"\nmin_entries = 3\n")}, 1, "render refused: 2 records, min_entries is 3"},
		{"failing check", []string{"--config", write("check.toml", "[[template]]\nsrc = \""+good+"\"\ndest = \""+dest+"\"\ncheck = \"echo 'config is bad'; exit 1\"\n")}, 1, "config is bad"},
		{"failing reload", []string{"--template", good + ":" + dest + ":echo reload failed; exit 1"}, 1, "previous file restored"},
		{"unknown config key", []string{"--config", unknownKey}, 2, `berth.toml:4:1: unknown key "template.reload_cmd"`},
		{"same destination", []string{"--template", good + ":" + dest, "--template", syntax + ":" + dest}, 2, "writes " + dest + ", as does"},
		{"destination is a directory", []string{"--template", good + ":" + dir}, 1, "is a directory"},
		{"no templates", nil, 2, "no templates"},
		{"no destination without --stdout", []string{"--template", good}, 2, "no destination"},
		{"bad context", []string{"--template", good + ":" + dest, "--context", write("bad.json", "[{\"Nmae\": \"x\"}]")}, 2, `unknown field "Nmae"`},
		{"bad dialect", []string{"--template", good + ":" + dest, "--dialect", "jinja"}, 2, `dialect "jinja"`},
		{"dry-run and stdout", []string{"--template", good + ":" + dest, "--dry-run", "--stdout"}, 2, "exclude"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const old = "old content\n"
			if err := os.WriteFile(dest, []byte(old), 0o644); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"render"}, tc.args...)
			if !strings.Contains(strings.Join(tc.args, " "), "--context") {
				args = append(args, "--context", kv)
			}
			code, _, errs := run(t, t.Context(), "", args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %s", code, tc.code, errs)
			}
			if !strings.Contains(errs, tc.want) {
				t.Errorf("stderr %q does not contain %q", errs, tc.want)
			}
			if got := readFile(t, dest); got != old {
				t.Errorf("destination changed to %q", got)
			}
		})
	}
}

// TestRenderStores renders the same templates from real stores: embedded
// etcd, an etcd server, Consul, and a file store, each filled with the
// fixtures (and the docker-gen containers as container records).
func TestRenderStores(t *testing.T) {
	cluster := testenv.StartEtcd(t, 1)
	consul := testenv.StartConsul(t)
	kvs := storeData(t)
	stores := []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"embedded", func(t *testing.T) string { return fill(t, "embedded://"+filepath.Join(t.TempDir(), "store"), kvs) }},
		{"etcd", func(t *testing.T) string { return fill(t, cluster.URL(), kvs) }},
		{"consul", func(t *testing.T) string { return fill(t, "consul://"+consul.Addr, kvs) }},
		{"file", func(t *testing.T) string { return "file://" + writeJSONStore(t, kvs) }},
	}
	for _, sc := range stores {
		t.Run(sc.name, func(t *testing.T) {
			url := sc.url(t)
			t.Setenv("BERTH_TEST_CONFD_VAR", "hello")
			for _, c := range []struct {
				golden string
				args   []string
			}{
				{"native.golden", []string{"--template", fixture("upstreams.tmpl")}},
				{"confd.golden", []string{"--confdir", fixture("confd")}},
				{"dockergen.golden", []string{"--template", fixture("vhosts.tmpl"), "--dialect", "docker-gen"}},
			} {
				code, out, errs := run(t, t.Context(), "", append([]string{"render", "--stdout", "--store", url}, c.args...)...)
				if code != 0 {
					t.Fatalf("%s: exit %d: %s", c.golden, code, errs)
				}
				want, _ := os.ReadFile(fixture(c.golden))
				if out != string(want) {
					t.Errorf("%s from %s:\n%s\nwant:\n%s", c.golden, sc.name, out, want)
				}
			}
			// The [store] table of a berth.toml names the store when no flag does.
			conf := filepath.Join(t.TempDir(), "berth.toml")
			src, _ := filepath.Abs(fixture("upstreams.tmpl"))
			os.WriteFile(conf, []byte("[store]\nurl = \""+url+"\"\n[[template]]\nsrc = \""+src+"\"\ndest = \"/unused\"\n"), 0o644)
			code, out, errs := run(t, t.Context(), "", "render", "--stdout", "--config", conf)
			if want, _ := os.ReadFile(fixture("native.golden")); code != 0 || out != string(want) {
				t.Errorf("from the [store] of berth.toml: exit %d, stderr %s\n%s", code, errs, out)
			}

			// And a real write through the pipeline.
			dest := filepath.Join(t.TempDir(), "upstreams.conf")
			if code, _, errs := run(t, t.Context(), "", "render", "--store", url, "--template", fixture("upstreams.tmpl")+":"+dest); code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			want, _ := os.ReadFile(fixture("native.golden"))
			if got := readFile(t, dest); got != string(want) {
				t.Errorf("written file:\n%s", got)
			}
		})
	}
}

// storeData is every key the store tests render from: the native and confd
// fixtures, and the docker-gen containers as container records of host1.
func storeData(t *testing.T) []store.KV {
	t.Helper()
	var kvs []store.KV
	for _, f := range []string{"native.json", "confd.json"} {
		fx, err := render.ReadFixture(fixture(f))
		if err != nil {
			t.Fatal(err)
		}
		kvs = append(kvs, fx.KVs...)
	}
	fx, err := render.ReadFixture(fixture("containers.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range fx.Containers {
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		kvs = append(kvs, store.KV{Key: records.ContainerKey(records.DefaultPrefix, "host1", c.ID), Value: b})
	}
	return kvs
}

// fill writes kvs into the store at url, through the store API, and
// returns url. The store stays open until the test ends: an embedded one is
// served by the test, as by a daemon, for the commands to join.
func fill(t *testing.T, url string, kvs []store.KV) string {
	t.Helper()
	st, err := backend.Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, kv := range kvs {
		if _, err := st.Put(t.Context(), kv.Key, kv.Value); err != nil {
			t.Fatal(err)
		}
	}
	return url
}

// writeJSONStore writes kvs as one nested JSON document for the file
// backend (which flattens it back into the same keys) and returns its path.
func writeJSONStore(t *testing.T, kvs []store.KV) string {
	t.Helper()
	root := map[string]any{}
	for _, kv := range kvs {
		parts := strings.Split(strings.TrimPrefix(kv.Key, "/"), "/")
		m := root
		for _, p := range parts[:len(parts)-1] {
			next, ok := m[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[p] = next
			}
			m = next
		}
		m[parts[len(parts)-1]] = string(kv.Value)
	}
	b, err := json.Marshal(root)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "values.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func abs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRenderConfdAndDockerGenFiles writes through confd's and docker-gen's
// own configuration files: confd's check_cmd runs on the staged file, its
// mode applies, reload_cmd and docker-gen's notifycmd run after the swap.
func TestRenderConfdAndDockerGenFiles(t *testing.T) {
	t.Setenv("BERTH_TEST_CONFD_VAR", "hello")
	dir := t.TempDir()
	log := filepath.Join(dir, "reload.log")

	// The confd directory as is, but for its destination.
	confd := filepath.Join(dir, "confd")
	os.MkdirAll(filepath.Join(confd, "conf.d"), 0o755)
	os.MkdirAll(filepath.Join(confd, "templates"), 0o755)
	os.WriteFile(filepath.Join(confd, "templates", "app.tmpl"), []byte(readFile(t, fixture("confd/templates/app.tmpl"))), 0o644)
	confdDest := filepath.Join(dir, "app.conf")
	resource := strings.Replace(readFile(t, fixture("confd/conf.d/app.toml")), "/tmp/berth-confd-app.conf", confdDest, 1)
	resource = strings.Replace(resource, `reload_cmd = "true"`, `reload_cmd = "echo confd >> `+log+`"`, 1)
	os.WriteFile(filepath.Join(confd, "conf.d", "app.toml"), []byte(resource), 0o644)
	if code, _, errs := run(t, t.Context(), "", "render", "--confdir", confd, "--context", fixture("confd.json")); code != 0 {
		t.Fatalf("confd: exit %d: %s", code, errs)
	}
	if want := readFile(t, fixture("confd.golden")); readFile(t, confdDest) != want {
		t.Errorf("confd output differs from confd.golden")
	}
	if fi, err := os.Stat(confdDest); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("confd mode: %v %v", fi.Mode(), err)
	}
	// The check_cmd greps the staged file: a template whose output fails it never lands.
	os.WriteFile(filepath.Join(confd, "templates", "app.tmpl"), []byte("no header\n"), 0o644)
	if code, _, errs := run(t, t.Context(), "", "render", "--confdir", confd, "--context", fixture("confd.json")); code != 1 || !strings.Contains(errs, "check") {
		t.Errorf("failing check_cmd: exit %d: %s", code, errs)
	}

	// A docker-gen [[config]] file.
	dgDest := filepath.Join(dir, "vhosts.conf")
	src, _ := filepath.Abs(fixture("vhosts.tmpl"))
	cfg := filepath.Join(dir, "docker-gen.cfg")
	os.WriteFile(cfg, []byte("[[config]]\ntemplate = \""+src+"\"\ndest = \""+dgDest+"\"\nwatch = true\nwait = \"500ms:2s\"\nnotifycmd = \"echo docker-gen >> "+log+"\"\n"), 0o644)
	if code, _, errs := run(t, t.Context(), "", "render", "--config", cfg, "--context", fixture("containers.json")); code != 0 {
		t.Fatalf("docker-gen: exit %d: %s", code, errs)
	}
	if want := readFile(t, fixture("dockergen.golden")); readFile(t, dgDest) != want {
		t.Errorf("docker-gen output differs from dockergen.golden")
	}
	if got := strings.Fields(readFile(t, log)); strings.Join(got, " ") != "confd docker-gen" {
		t.Errorf("reloads %q", got)
	}
}

// TestRenderEnvStore renders the confd and docker-gen goldens from the
// environment (env://). The native fixture stays out: its key
// /berth/config/max_body has an underscore, which env's key mapping (confd's)
// reads back as a path separator.
func TestRenderEnvStore(t *testing.T) {
	for _, kv := range storeData(t) {
		if strings.HasPrefix(kv.Key, records.ServicesPrefix("")) || strings.HasPrefix(kv.Key, "/berth/config/") {
			continue
		}
		t.Setenv(env.VarName(kv.Key), string(kv.Value))
	}
	t.Setenv("BERTH_TEST_CONFD_VAR", "hello")
	for _, c := range []struct {
		golden string
		args   []string
	}{
		{"confd.golden", []string{"--confdir", fixture("confd")}},
		{"dockergen.golden", []string{"--template", fixture("vhosts.tmpl"), "--dialect", "docker-gen"}},
	} {
		code, out, errs := run(t, t.Context(), "", append([]string{"render", "--stdout", "--store", "env://"}, c.args...)...)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", c.golden, code, errs)
		}
		if want := readFile(t, fixture(c.golden)); out != want {
			t.Errorf("%s from env://:\n%s\nwant:\n%s", c.golden, out, want)
		}
	}
}
