package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/render/dialect"
)

func write(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	file := write(t, dir, "berth.toml", `
wait = "200ms"
settle = "300ms"

[store]
url = "etcd://127.0.0.1:2379"
ca = "/etc/berth/ca.pem"
username = "berth"

[runtime]
kind = "docker"

[[template]]
name = "nginx"
src = "templates/nginx.tmpl"
includes = ["templates/upstream.tmpl"]
dest = "/etc/nginx/conf.d/default.conf"
dialect = "native"
prefixes = ["/berth/services/"]
wait = "100ms:1s"
mode = "0640"
uid = 101
group = "root"
backup = true
check = "nginx -t -c {{.src}}"
reload = "nginx -s reload"
timeout = "10s"
min_entries = 1
max_shrink = "50%"
allow_empty = true
check_in_place = true
settle = "1s"
missingkey = "error"
dedup = true

[[template]]
src = "/abs/dg.tmpl"
dest = "/tmp/dg.conf"
dialect = "docker-gen"
keep_blank_lines = true

[daemon]
host = "edge-1"
ttl = "20s"
state_dir = "state"
listen = "127.0.0.1:9180"
`)
	f, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if f.Store.URL != "etcd://127.0.0.1:2379" || f.Store.CA != "/etc/berth/ca.pem" || f.Store.Username != "berth" || f.Runtime.Kind != "docker" {
		t.Errorf("store/runtime: %+v %+v", f.Store, f.Runtime)
	}
	if want := (Daemon{Host: "edge-1", TTL: "20s", StateDir: filepath.Join(dir, "state"), Listen: "127.0.0.1:9180"}); f.Daemon != want {
		t.Errorf("daemon: %+v, want %+v", f.Daemon, want)
	}
	if len(f.Templates) != 2 {
		t.Fatalf("%d templates", len(f.Templates))
	}
	n := f.Templates[0]
	if n.Name != "nginx" || n.Src != filepath.Join(dir, "templates/nginx.tmpl") || n.Origin != file+":13" {
		t.Errorf("nginx: name %q src %q origin %q", n.Name, n.Src, n.Origin)
	}
	if !reflect.DeepEqual(n.Options.Includes, []string{filepath.Join(dir, "templates/upstream.tmpl")}) {
		t.Errorf("includes %v", n.Options.Includes)
	}
	s := n.Spec
	if s.Name != "nginx" || s.Dest != "/etc/nginx/conf.d/default.conf" || s.Mode != 0o640 || *s.UID != 101 || *s.GID != 0 ||
		!s.Backup || s.Check != "nginx -t -c {{.src}}" || s.Reload != "nginx -s reload" || s.Timeout != 10*time.Second ||
		s.MinEntries != 1 || s.MaxShrink != 0.5 || !s.AllowEmpty || !s.CheckInPlace {
		t.Errorf("spec %+v", s)
	}
	if !n.Dedup || f.Templates[1].Dedup {
		t.Errorf("dedup %v and %v, want true and false", n.Dedup, f.Templates[1].Dedup)
	}
	if n.Settle != time.Second || f.Templates[1].Settle != 300*time.Millisecond || f.Templates[1].Spec.AllowEmpty {
		t.Errorf("settle %v and %v, allow_empty of the second %v", n.Settle, f.Templates[1].Settle, f.Templates[1].Spec.AllowEmpty)
	}
	if n.Wait != (Wait{Min: 100 * time.Millisecond, Max: time.Second}) || !n.Options.MissingKeyError || n.Options.Dialect != dialect.Native || n.Options.Prefix != "/berth" {
		t.Errorf("nginx: %+v", n)
	}
	d := f.Templates[1]
	if d.Name != "/tmp/dg.conf" || d.Options.Dialect != dialect.DockerGen || !d.Options.KeepBlankLines || d.Spec.UID != nil || d.Spec.Mode != 0 ||
		!reflect.DeepEqual(d.Prefixes, []string{"/berth/containers/"}) || d.Wait != (Wait{Min: 200 * time.Millisecond, Max: 800 * time.Millisecond}) {
		t.Errorf("docker-gen template: %+v", d)
	}
}

// TestLoadErrors: every bad file is an error naming the file and the line.
func TestLoadErrors(t *testing.T) {
	const head = "[[template]]\nsrc = \"a.tmpl\"\ndest = \"/tmp/a\"\n"
	tests := []struct{ name, text, want string }{
		{"unknown top-level key", "prefx = \"/x\"\n", `:1:1: unknown key "prefx"`},
		{"unknown template key", head + "chek = \"true\"\n", `:4:1: unknown key "template.chek"`},
		{"unknown store key", "[store]\nurl = \"x\"\nendpoint = \"y\"\n", `:3:1: unknown key "store.endpoint"`},
		{"wrong type", head + "backup = \"yes\"\n", `:4:`},
		{"syntax", head + "mode = \n", `:4:`},
		{"bad mode", head + "mode = \"rw\"\n", `:1: template "/tmp/a": mode "rw"`},
		{"mode out of range", head + "mode = \"1777\"\n", `mode "1777"`},
		{"bad wait", head + "wait = \"1s:100ms\"\n", `:1: template "/tmp/a": wait "1s:100ms": max is less than min`},
		{"bad max_shrink", head + "max_shrink = \"50\"\n", `max_shrink "50"`},
		{"bad timeout", head + "timeout = \"-1s\"\n", `timeout "-1s"`},
		{"check_in_place without check", head + "check_in_place = true\n", `check_in_place needs a check command`},
		{"dedup with live", head + "dedup = true\nlive = \"nginx-lua\"\n", `dedup and live cannot be combined`},
		{"bad settle", head + "settle = \"soon\"\n", `settle "soon"`},
		{"bad top-level settle", "settle = \"0s\"\n", `settle "0s"`},
		{"allow_empty not a bool", head + "allow_empty = \"yes\"\n", `:4:`},
		{"bad dialect", head + "dialect = \"jinja\"\n", `dialect "jinja"`},
		{"bad missingkey", head + "missingkey = \"panic\"\n", `missingkey "panic"`},
		{"uid and user", head + "uid = 0\nuser = \"root\"\n", `both uid and user`},
		{"unknown user", head + "user = \"no-such-user-berth\"\n", `user "no-such-user-berth"`},
		{"no dest", "[[template]]\nsrc = \"a\"\n", `:1: template "": dest is required`},
		{"no src", "[[template]]\ndest = \"/tmp/x\"\n", `src is required`},
		{"relative prefix", head + "prefixes = [\"berth\"]\n", `prefix "berth"`},
		{"nondeterministic docker-gen", head + "dialect = \"docker-gen\"\nallow_nondeterministic = true\n", `native dialect only`},
		{"bad check placeholder", head + "check = \"nginx -t -c {{.source}}\"\n", `:1: template "/tmp/a": check command "nginx -t -c {{.source}}"`},
		{"bad reload syntax", head + "reload = \"kill {{.src\"\n", `reload command "kill {{.src"`},
		{"bad runtime", "[runtime]\nkind = \"podman\"\n", `runtime kind "podman"`},
		{"unknown daemon key", "[daemon]\nttl = \"10s\"\nsocket_mode = \"0600\"\n", `:3:1: unknown key "daemon.socket_mode"`},
		{"bad daemon ttl", "\n[daemon]\nttl = \"ten seconds\"\n", `:2: [daemon] ttl "ten seconds"`},
		{"zero daemon ttl", "[daemon]\nttl = \"0s\"\n", `[daemon] ttl "0s": want a positive duration`},
		{"negative drain", "[daemon]\ndrain = \"-1s\"\n", `[daemon] drain "-1s"`},
		{"same dest", head + "\n\n" + head, `:6: template "/tmp/a" writes /tmp/a, as does template "/tmp/a"`},
		{"same name", head + "name = \"x\"\n[[template]]\nsrc = \"b\"\ndest = \"/tmp/b\"\nname = \"x\"\n", `:5: template name "x" is also used at`},
		{"unknown builtin src", "[[template]]\nsrc = \"builtin:apache\"\ndest = \"/tmp/a\"\n", `:1: template "/tmp/a": src: unknown builtin template "builtin:apache": berth ships builtin:haproxy.cfg, builtin:nginx, builtin:nginx-lua, builtin:nginx.conf`},
		{"unknown builtin include", head + "includes = [\"builtin:nginx\", \"builtin:ngnix\"]\n", `includes: unknown builtin template "builtin:ngnix"`},
		{"same dest, other spelling", head + "[[template]]\nsrc = \"b\"\ndest = \"/tmp/./a\"\n", `as does template`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := write(t, t.TempDir(), "berth.toml", tc.text)
			_, err := Load(file)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q\nwant it to name %s and contain %q", err, file, tc.want)
			}
		})
	}
}

func TestParseWait(t *testing.T) {
	tests := []struct {
		in   string
		want Wait
		err  bool
	}{
		{"", Wait{}, false},
		{"500ms", Wait{Min: 500 * time.Millisecond, Max: 2 * time.Second}, false},
		{"100ms:1s", Wait{Min: 100 * time.Millisecond, Max: time.Second}, false},
		{" 2s : 2s ", Wait{Min: 2 * time.Second, Max: 2 * time.Second}, false},
		{"1s:500ms", Wait{}, true},
		{"fast", Wait{}, true},
		{"1s:slow", Wait{}, true},
		{"-1s", Wait{}, true},
	}
	for _, tc := range tests {
		got, err := ParseWait(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseWait(%q) = %v, %v; want %v, err %v", tc.in, got, err, tc.want, tc.err)
		}
		if err == nil && tc.in != "" {
			if again, _ := ParseWait(got.String()); again != got {
				t.Errorf("String() %q does not parse back", got.String())
			}
		}
	}
}

func TestLoadConfd(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "templates/nginx.tmpl", "x")
	write(t, dir, "conf.d/nginx.toml", `# confd resource
[template]
src = "nginx.tmpl"
dest = "/tmp/confd-nginx.conf"
keys = ["/upstreams", "services/web"]
prefix = "myapp"
mode = "0600"
uid = 0
gid = 0
check_cmd = "nginx -t -c {{.src}}"
reload_cmd = "nginx -s reload"
`)
	write(t, dir, "conf.d/app.toml", "[template]\nsrc = \"app.tmpl\"\ndest = \"/tmp/confd-app\"\nkeys = [\"/app\"]\n")
	ts, err := LoadConfd(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 || ts[0].Name != "app" || ts[1].Name != "nginx" {
		t.Fatalf("templates %+v", ts)
	}
	n := ts[1]
	if n.Src != filepath.Join(dir, "templates/nginx.tmpl") || n.Options.Dialect != dialect.Confd || n.Options.Prefix != "/myapp" ||
		!reflect.DeepEqual(n.Prefixes, []string{"/myapp/upstreams", "/myapp/services/web"}) ||
		n.Spec.Mode != 0o600 || *n.Spec.UID != 0 || *n.Spec.GID != 0 ||
		n.Spec.Check != "nginx -t -c {{.src}}" || n.Spec.Reload != "nginx -s reload" || n.Origin != filepath.Join(dir, "conf.d/nginx.toml")+":2" {
		t.Errorf("nginx resource %+v", n)
	}
	if a := ts[0]; a.Options.Prefix != "/" || !reflect.DeepEqual(a.Prefixes, []string{"/app"}) || a.Spec.UID != nil {
		t.Errorf("app resource %+v", a)
	}
	// The global prefix overrides the resources', as in confd.
	ts, err = LoadConfd(dir, "/prod")
	if err != nil {
		t.Fatal(err)
	}
	if n := ts[1]; n.Options.Prefix != "/prod" || n.Prefixes[0] != "/prod/upstreams" {
		t.Errorf("global prefix: %+v", n)
	}
}

func TestLoadConfdErrors(t *testing.T) {
	tests := []struct{ name, text, want string }{
		{"unknown key", "[template]\nsrc = \"a\"\ndest = \"/tmp/a\"\nkeys = [\"/a\"]\nowner = \"nginx\"\n", `:5:1: unknown key "template.owner"`},
		{"no keys", "[template]\nsrc = \"a\"\ndest = \"/tmp/a\"\n", `:1: keys is required`},
		{"no table", "src = \"a\"\n", `unknown key "src"`},
		{"empty", "", `no [template] table`},
		{"bad mode", "[template]\nsrc = \"a\"\ndest = \"/tmp/a\"\nkeys = [\"/a\"]\nmode = \"abc\"\n", `mode "abc"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			file := write(t, dir, "conf.d/x.toml", tc.text)
			_, err := LoadConfd(dir, "")
			if err == nil || !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to name %s and contain %q", err, file, tc.want)
			}
		})
	}
	if _, err := LoadConfd(t.TempDir(), ""); err == nil || !strings.Contains(err.Error(), "conf.d") {
		t.Errorf("missing conf.d: %v", err)
	}
	dir := t.TempDir()
	write(t, dir, "conf.d/a.toml", "[template]\nsrc = \"a\"\ndest = \"/tmp/same\"\nkeys = [\"/a\"]\n")
	write(t, dir, "conf.d/b.toml", "[template]\nsrc = \"b\"\ndest = \"/tmp/same\"\nkeys = [\"/b\"]\n")
	if _, err := LoadConfd(dir, ""); err == nil || !strings.Contains(err.Error(), "writes /tmp/same, as does") {
		t.Errorf("same dest: %v", err)
	}
}

func TestLoadDockerGen(t *testing.T) {
	dir := t.TempDir()
	file := write(t, dir, "docker-gen.cfg", `
[[config]]
template = "/etc/docker-gen/templates/nginx.tmpl;/etc/docker-gen/templates/extra.tmpl"
dest = "/etc/nginx/conf.d/default.conf"
watch = true
wait = "500ms:2s"
notifycmd = "nginx -s reload"
notifyoutput = true
keepblanklines = true
notifycontainerssignal = 1

[config.NotifyContainers]
nginx = 1

[config.notifycontainersfilter]
label = ["com.example.proxy"]

[config.containerfilter]
status = ["running"]

[[config]]
template = "/etc/docker-gen/templates/etcd.tmpl"
dest = "/tmp/etcd.sh"
interval = 30
`)
	ts, err := LoadDockerGen(file, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 {
		t.Fatalf("%d templates", len(ts))
	}
	n := ts[0]
	if n.Src != "/etc/docker-gen/templates/nginx.tmpl" || !reflect.DeepEqual(n.Options.Includes, []string{"/etc/docker-gen/templates/extra.tmpl"}) ||
		n.Options.Dialect != dialect.DockerGen || !n.Options.KeepBlankLines || n.Spec.Reload != "nginx -s reload" || n.Wait != (Wait{Min: 500 * time.Millisecond, Max: 2 * time.Second}) ||
		!reflect.DeepEqual(n.Prefixes, []string{"/berth/containers/"}) || n.Origin != file+":2" {
		t.Errorf("nginx config %+v", n)
	}
	x := n.DockerGen
	if !x.Watch || !x.NotifyOutput || x.NotifyContainers["nginx"] != 1 || x.NotifyContainersSignal != 1 ||
		!reflect.DeepEqual(x.NotifyContainersFilter["label"], []string{"com.example.proxy"}) || x.ContainerFilter["status"][0] != "running" {
		t.Errorf("docker-gen extras %+v", x)
	}
	if ts[1].DockerGen.Interval != 30*time.Second || ts[1].Origin != file+":21" {
		t.Errorf("etcd config %+v", ts[1])
	}

	// Load recognises a docker-gen file.
	f, err := Load(file)
	if err != nil || len(f.Templates) != 2 || f.Templates[0].Options.Dialect != dialect.DockerGen {
		t.Errorf("Load of a docker-gen file: %+v, %v", f, err)
	}

	// docker-gen's README still shows onlyexposed, which docker-gen ignores silently: berth does not.
	bad := write(t, dir, "old.cfg", "[[config]]\ntemplate = \"a\"\ndest = \"/tmp/b\"\nonlyexposed = true\n")
	if _, err := LoadDockerGen(bad, ""); err == nil || !strings.Contains(err.Error(), bad+`:4:1: unknown key "config.onlyexposed"`) {
		t.Errorf("onlyexposed: %v", err)
	}
}

func TestParseTemplateFlag(t *testing.T) {
	tests := []struct {
		in                string
		src, dest, reload string
		stdout            bool
		err               string
	}{
		{in: "in.tmpl:/tmp/out:nginx -s reload", src: "in.tmpl", dest: "/tmp/out", reload: "nginx -s reload"},
		{in: "in.tmpl:/tmp/out:sh -c 'a:b'", src: "in.tmpl", dest: "/tmp/out", reload: "sh -c 'a:b'"},
		{in: "in.tmpl:/tmp/out", src: "in.tmpl", dest: "/tmp/out"},
		{in: "in.tmpl", src: "in.tmpl", stdout: true},
		{in: ":/tmp/out", err: "src is required"},
		{in: "builtin:nginx:/tmp/out:nginx -s reload", src: "builtin:nginx", dest: "/tmp/out", reload: "nginx -s reload"},
		{in: "builtin:nginx", src: "builtin:nginx", stdout: true},
		{in: "builtin:apache:/tmp/out", err: `unknown builtin template "builtin:apache": berth ships builtin:haproxy.cfg, builtin:nginx, builtin:nginx-lua, builtin:nginx.conf`},
	}
	for _, tc := range tests {
		tm, err := ParseTemplateFlag(tc.in, dialect.Options{Dialect: dialect.Native})
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || tm.Src != tc.src || tm.Spec.Dest != tc.dest || tm.Spec.Reload != tc.reload || tm.Stdout() != tc.stdout {
			t.Errorf("%q: %+v %v", tc.in, tm, err)
		}
	}
}

func TestMinReloadInterval(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "berth.toml")
	os.WriteFile(p, []byte(`min_reload_interval = "2s"
[[template]]
name = "a"
src = "a.tmpl"
dest = "/tmp/a"
[[template]]
name = "b"
src = "b.tmpl"
dest = "/tmp/b"
min_reload_interval = "500ms"
`), 0o644)
	f, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if f.Templates[0].MinReloadInterval != 2*time.Second || f.Templates[1].MinReloadInterval != 500*time.Millisecond {
		t.Fatalf("min_reload_interval: %v, %v", f.Templates[0].MinReloadInterval, f.Templates[1].MinReloadInterval)
	}
	os.WriteFile(p, []byte("min_reload_interval = \"soon\"\n"), 0o644)
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "min_reload_interval") {
		t.Fatalf("bad min_reload_interval: %v", err)
	}
}

func TestGenerationCheck(t *testing.T) {
	tests := []struct {
		name, extra, want, err string
	}{
		{"with reload", "reload = \"nginx -s reload\"\ngeneration_check = \"! pgrep -f 'shutting dow[n]'\"\n", "! pgrep -f 'shutting dow[n]'", ""},
		{"without reload", "generation_check = \"true\"\n", "", "generation_check needs a reload command"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "berth.toml")
			os.WriteFile(p, []byte("[[template]]\nsrc = \"a.tmpl\"\ndest = \"/tmp/a\"\n"+tc.extra), 0o644)
			f, err := Load(p)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Load: %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || f.Templates[0].Spec.GenerationCheck != tc.want {
				t.Fatalf("Load: %v, generation_check %q", err, f.Templates[0].Spec.GenerationCheck)
			}
		})
	}
}

// A configuration named by a relative path still yields absolute paths:
// they end up in commands that may run in another directory.
func TestLoadRelativePath(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "berth.toml", "[daemon]\nstate_dir = \"state\"\n[[template]]\nsrc = \"a.tmpl\"\ndest = \"out/a.conf\"\n")
	t.Chdir(dir)
	f, err := Load("berth.toml")
	if err != nil {
		t.Fatal(err)
	}
	real, _ := filepath.EvalSymlinks(dir)
	for _, p := range []string{f.Daemon.StateDir, f.Templates[0].Src, f.Templates[0].Spec.Dest} {
		if !filepath.IsAbs(p) || !strings.HasPrefix(p, real) && !strings.HasPrefix(p, dir) {
			t.Errorf("%q: want an absolute path under %s", p, dir)
		}
	}
}

// TestDaemonDrainZero: drain = "0s" (or "0") turns the drain off; other
// daemon durations must be positive (see the table above).
func TestDaemonDrainZero(t *testing.T) {
	for _, v := range []string{"0s", "0"} {
		f, err := Load(write(t, t.TempDir(), "berth.toml", "[daemon]\ndrain = \""+v+"\"\n"))
		if err != nil {
			t.Fatalf("drain = %q: %v", v, err)
		}
		if f.Daemon.Drain != v {
			t.Errorf("drain = %q read as %q", v, f.Daemon.Drain)
		}
	}
}

// TestLoadBuiltin: src and includes may name a shipped template; it is
// not made relative to the file's directory.
func TestLoadBuiltin(t *testing.T) {
	dir := t.TempDir()
	file := write(t, dir, "berth.toml", "[[template]]\nsrc = \"builtin:nginx.conf\"\nincludes = [\"builtin:nginx\", \"local.tmpl\"]\ndest = \"nginx.conf\"\n")
	f, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	tm := f.Templates[0]
	if tm.Src != "builtin:nginx.conf" || !reflect.DeepEqual(tm.Options.Includes, []string{"builtin:nginx", filepath.Join(dir, "local.tmpl")}) || tm.Spec.Dest != filepath.Join(dir, "nginx.conf") {
		t.Errorf("src %q includes %q dest %q", tm.Src, tm.Options.Includes, tm.Spec.Dest)
	}
}
