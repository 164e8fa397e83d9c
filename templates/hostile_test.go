package templates_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/records/recordstest"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/etcd"
)

// directives are the first words of every line nginx.conf.tmpl and
// nginx.tmpl write. A line starting with anything else was injected.
var directives = []string{
	"daemon", "pid", "error_log", "events", "http", "access_log", "client_body_temp_path", "proxy_temp_path",
	"fastcgi_temp_path", "uwsgi_temp_path", "scgi_temp_path", "server_names_hash_bucket_size", "server_names_hash_max_size",
	"map", "default", "''", "server", "listen", "server_name", "return", "upstream", "keepalive", "location",
	"grpc_set_header", "grpc_pass", "proxy_pass", "proxy_http_version", "proxy_set_header", "}", "#",
	"ssl_certificate", "ssl_certificate_key", "ssl_reject_handshake", "add_header", // HTTPS (https_hostile_test.go)
}

var serverNameRE = regexp.MustCompile(`(?m)^\s*server_name\s+([^;]*);`)

// parsed is what a rendered configuration routes.
type parsed struct {
	names   []string            // every server_name, in order
	servers map[string][]string // upstream name → its servers
	blocks  int                 // server blocks
}

// parseConf reads the routing out of a rendered nginx.conf and fails the
// test on a line that none of the templates writes.
func parseConf(t *testing.T, conf []byte) parsed {
	t.Helper()
	p := parsed{servers: map[string][]string{}}
	upstream := ""
	for i, line := range strings.Split(string(conf), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line == "events { worker_connections 1024; }" { // nginx.conf.tmpl's one-line block
			continue
		}
		word, _, _ := strings.Cut(line, " ")
		if !slices.Contains(directives, word) && !strings.HasPrefix(line, "#") {
			t.Fatalf("line %d: %q is no directive of the template:\n%s", i+1, line, conf)
		}
		if !strings.HasPrefix(line, "#") && !strings.HasSuffix(line, ";") && !strings.HasSuffix(line, "{") && line != "}" {
			t.Fatalf("line %d: %q does not end a directive or a block", i+1, line)
		}
		switch {
		case word == "upstream":
			upstream = strings.Fields(line)[1]
		case word == "server" && upstream != "":
			p.servers[upstream] = append(p.servers[upstream], strings.TrimSuffix(strings.Fields(line)[1], ";"))
		case line == "server {":
			p.blocks++
		case line == "}":
			upstream = ""
		}
	}
	for _, m := range serverNameRE.FindAllStringSubmatch(string(conf), -1) {
		p.names = append(p.names, strings.Fields(m[1])...)
	}
	return p
}

// nginxT checks a whole nginx.conf with the real nginx.
func nginxT(t *testing.T, n *testenv.Nginx, conf []byte) {
	t.Helper()
	if err := os.WriteFile(n.Conf, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	check := strings.ReplaceAll(n.CheckCommand(), "{{.src}}", n.Conf)
	if out, err := (render.Exec{}).Run(t.Context(), []string{"/bin/sh", "-c", check}); err != nil {
		t.Fatalf("nginx -t rejects the rendered config: %v\n%s\n%s", err, out, conf)
	}
}

// hostileRecord is a raw instance record as anyone with store access could
// write it, bypassing the registrar: field holds v.
func hostileRecord(field recordstest.Field, v string) (key string, in records.Instance, routed string) {
	// Service "zz-bad" sorts after the good record's "web": the good one
	// is seen first and keeps its protocol in a conflict.
	in = records.Instance{ID: "bad", Name: "bad-1", Service: "zz-bad", Host: "h1", IP: "127.0.0.1", Port: 9,
		State: records.StateRunning, Env: map[string]string{"VIRTUAL_HOST": "other.localhost"}}
	routed = "other.localhost" // the host the hostile record is routed under when the value is harmless
	service := in.Service
	switch field {
	case recordstest.Host:
		in.Env["VIRTUAL_HOST"] = v
		routed = ""
	case recordstest.Path:
		in.Env["VIRTUAL_PATH"] = v
	case recordstest.Port:
		in.Env["VIRTUAL_PORT"] = v // the template uses the record's port, never the variable
	case recordstest.Proto:
		in.Env["VIRTUAL_PROTO"] = v
	case recordstest.Service:
		in.Service, service = v, v
	case recordstest.Name:
		// A protocol conflict on the good host prints the name in a comment.
		in.Name, in.Env = v, map[string]string{"VIRTUAL_HOST": "good.localhost", "VIRTUAL_PROTO": "grpc"}
		routed = "good.localhost"
	case recordstest.Image:
		in.Image = v
	}
	return records.ServiceKey("/berth", service, "h1", "bad"), in, routed
}

// TestHostileRecords puts each corpus value into each field of a raw
// record next to a good record and renders nginx.conf.tmpl: the real
// nginx -t accepts every rendering, no line is injected, the good host is
// routed to exactly its server, and the hostile record is routed only when
// its value is legitimately valid.
func TestHostileRecords(t *testing.T) {
	tm, err := dialect.Parse("nginx.conf.tmpl", dialect.Options{Dialect: dialect.Native, Includes: []string{"nginx.tmpl"}})
	if err != nil {
		t.Fatal(err)
	}
	n := testenv.NewNginx(t)
	env := map[string]string{"BERTH_NGINX_LISTEN": n.Addr, "BERTH_NGINX_GRPC_LISTEN": "127.0.0.1:1"}
	good := records.Instance{ID: "good", Name: "good-1", Service: "web", Host: "h1", IP: "127.0.0.2", Port: 8080,
		State: records.StateRunning, Env: map[string]string{"VIRTUAL_HOST": "good.localhost"}}
	fields := append(slices.Clone(recordstest.Fields), "ip", "port number")
	for _, f := range fields {
		for _, v := range recordstest.Corpus() {
			t.Run(string(f)+"/"+v.Case, func(t *testing.T) {
				key, bad, routed := hostileRecord(f, v.Value)
				switch f {
				case "ip":
					bad.IP = v.Value
					routed = ""
				case "port number":
					bad.Port = len(v.Value)*1000 + 70000 // never a port
					routed = ""
				}
				want := []string{"_", "good.localhost"}
				switch {
				case f == recordstest.Host && v.Valid(recordstest.Host):
					want = append(want, strings.ToLower(v.Value))
				case f == recordstest.Path && !v.Valid(recordstest.Path), f == recordstest.Proto:
					routed = ""
				case f == recordstest.Service && !records.ValidSegment(v.Value):
					routed = "" // not a record key: never read
				}
				if routed != "" && routed != "good.localhost" {
					want = append(want, routed)
				}
				var kvs []store.KV
				for _, in := range []records.Instance{good, bad} {
					b, _ := json.Marshal(in)
					k := records.ServiceKey("/berth", in.Service, in.Host, in.ID)
					if in.ID == "bad" {
						k = key
					}
					kvs = append(kvs, store.KV{Key: k, Value: b})
				}
				slices.SortFunc(kvs, func(a, b store.KV) int { return strings.Compare(a.Key, b.Key) })
				var warnings []string
				var out bytes.Buffer
				if err := tm.Execute(&out, dialect.Input{KVs: kvs, Env: env, Warn: func(m string) { warnings = append(warnings, m) }}); err != nil {
					t.Fatal(err)
				}
				p := parseConf(t, out.Bytes())
				if !slices.Equal(sorted(p.names), sorted(want)) || p.blocks != len(want) {
					t.Fatalf("server names %q in %d blocks, want %q\n%s", p.names, p.blocks, want, out.Bytes())
				}
				if got := p.servers["good.localhost"]; !slices.Equal(got, []string{"127.0.0.2:8080"}) {
					t.Errorf("good.localhost goes to %q", got)
				}
				if routed == "" && !(f == recordstest.Host && v.Valid(recordstest.Host)) && len(warnings) == 0 && f != recordstest.Service {
					t.Errorf("left out without a warning")
				}
				nginxT(t, n, out.Bytes())
			})
		}
	}
}

func sorted(s []string) []string { return slices.Sorted(slices.Values(s)) }

// TestHostileRecordsRoute writes every hostile record (each corpus value in
// VIRTUAL_HOST, VIRTUAL_PATH, VIRTUAL_PROTO and the name) straight into a
// real store next to good ones, has the runner render nginx.conf.tmpl and
// the real nginx serve it: the good hosts answer from their backends only,
// the long legitimate names (111 and 253 bytes, beyond nginx's default
// server_names_hash_bucket_size) route, and a good container added after
// the bad ones is routed too.
func TestHostileRecordsRoute(t *testing.T) {
	st, err := etcd.Embedded(t.Context(), etcd.EmbeddedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n := testenv.NewNginx(t)
	t.Setenv("BERTH_NGINX_LISTEN", n.Addr)
	t.Setenv("BERTH_NGINX_GRPC_LISTEN", "127.0.0.1:1")
	put := func(key string, in records.Instance) {
		t.Helper()
		b, _ := json.Marshal(in)
		if _, err := st.Put(t.Context(), key, b); err != nil {
			t.Fatal(err)
		}
	}
	backend := func(id, svc string, env map[string]string) {
		ip, port := testenv.HTTPBackend(t, id)
		put(records.ServiceKey("/berth", svc, "h1", id), records.Instance{ID: id, Name: id, Service: svc, Host: "h1", IP: ip, Port: port, Env: env, State: records.StateRunning})
	}
	backend("good", "web", map[string]string{"VIRTUAL_HOST": "good.localhost"})
	backend("long111", "long", map[string]string{"VIRTUAL_HOST": recordstest.Long111})
	backend("long253", "long", map[string]string{"VIRTUAL_HOST": recordstest.Long253})
	for i, v := range recordstest.Corpus() {
		for _, f := range []recordstest.Field{recordstest.Host, recordstest.Path, recordstest.Proto, recordstest.Name} {
			_, in, _ := hostileRecord(f, v.Value)
			in.ID = fmt.Sprintf("bad%d-%d", i, slices.Index(recordstest.Fields, f))
			if f == recordstest.Host && v.Valid(recordstest.Host) {
				continue // the long names have their own backends
			}
			put(records.ServiceKey("/berth", in.Service, "h1", in.ID), in)
		}
	}
	serve(t, st, n, slog.LevelError)
	conf, err := os.ReadFile(n.Conf)
	if err != nil {
		t.Fatal(err)
	}
	p := parseConf(t, conf)
	if want := []string{"_", "good.localhost", recordstest.Long111, recordstest.Long253}; !slices.Equal(sorted(p.names), sorted(want)) {
		t.Fatalf("server names %q, want %q", p.names, want)
	}

	expect := func(host, path, want string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			code, body, err := n.Get(host, path)
			got := fmt.Sprintf("%d %s", code, body)
			if code != 200 {
				got = fmt.Sprintf("%d", code)
			}
			if err == nil && got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s%s answers %q (%v), want %q\n%s", records.Truncate(host), path, got, err, want, n.ErrorLog())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for range 5 { // one backend only: no hostile server joined its upstream
		expect("good.localhost", "/", "200 good good.localhost")
	}
	expect(recordstest.Long111, "/", "200 long111 "+recordstest.Long111)
	expect(recordstest.Long253, "/", "200 long253 "+recordstest.Long253)
	expect("evil.localhost", "/", "503")
	expect("a.localhost", "/", "503")

	// A good container started while the bad ones are in the store is
	// routed.
	backend("late", "late", map[string]string{"VIRTUAL_HOST": "late.localhost"})
	expect("late.localhost", "/", "200 late late.localhost")
	expect("good.localhost", "/", "200 good good.localhost")
}

// TestFragmentInDebianNginxConf renders nginx.tmpl as a conf.d fragment
// with a 111-byte host name and checks it with the real nginx under
// Debian's stock /etc/nginx/nginx.conf (paths moved into a temporary
// directory): server_names_hash_bucket_size is an http-level directive the
// stock file leaves commented out, so the fragment may set it, once.
func TestFragmentInDebianNginxConf(t *testing.T) {
	stock, err := os.ReadFile("/etc/nginx/nginx.conf")
	if err != nil {
		t.Fatalf("Debian's nginx.conf: %v (install Debian's nginx: scripts/install-deps)", err)
	}
	for _, line := range strings.Split(string(stock), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "server_names_hash_") {
			t.Fatalf("the stock nginx.conf sets %q: the fragment's would be a duplicate", line)
		}
	}
	n := testenv.NewNginx(t)
	dir := n.Dir
	confd := filepath.Join(dir, "conf.d")
	if err := os.MkdirAll(confd, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := strings.NewReplacer(
		"/etc/nginx/conf.d/", confd+"/",
		"include /etc/nginx/sites-enabled/*;", "",
		"/var/log/nginx/", dir+"/",
		"/run/nginx.pid", dir+"/nginx.pid",
	).Replace(string(stock))
	conf = strings.Replace(conf, "http {", "http {\n\tclient_body_temp_path "+dir+"/tmp/body;\n\tproxy_temp_path "+dir+"/tmp/proxy;\n\tfastcgi_temp_path "+dir+"/tmp/fastcgi;\n\tuwsgi_temp_path "+dir+"/tmp/uwsgi;\n\tscgi_temp_path "+dir+"/tmp/scgi;", 1)
	// Debian's module snippets (modules-enabled/*.conf) load modules by a
	// path relative to the prefix: give the temporary prefix nginx's.
	if err := os.Symlink("/usr/share/nginx/modules", filepath.Join(dir, "modules")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	fx := filepath.Join(t.TempDir(), "long.json")
	rec := fmt.Sprintf(`{"/berth/services/long/h1/a": {"id":"a","name":"a","ip":"10.1.0.2","port":80,"state":"running","env":{"VIRTUAL_HOST":%q}}}`, recordstest.Long111+",good.localhost")
	if err := os.WriteFile(fx, []byte(rec), 0o644); err != nil {
		t.Fatal(err)
	}
	frag := renderWith(t, "nginx.tmpl", nil, fx, map[string]string{"BERTH_NGINX_LISTEN": n.Addr})
	if c := bytes.Count(frag, []byte("server_names_hash_bucket_size 256;")); c != 1 {
		t.Fatalf("the fragment sets server_names_hash_bucket_size 256 %d times:\n%s", c, frag)
	}
	if err := os.WriteFile(filepath.Join(confd, "default.conf"), frag, 0o644); err != nil {
		t.Fatal(err)
	}
	nginxT(t, n, []byte(conf))
	// Without the directive, nginx refuses the long name: the test can fail.
	plain := bytes.ReplaceAll(frag, []byte("server_names_hash_bucket_size 256;"), nil)
	if err := os.WriteFile(filepath.Join(confd, "default.conf"), plain, 0o644); err != nil {
		t.Fatal(err)
	}
	check := strings.ReplaceAll(n.CheckCommand(), "{{.src}}", n.Conf)
	if out, err := (render.Exec{}).Run(t.Context(), []string{"/bin/sh", "-c", check}); err == nil || !strings.Contains(string(out), "server_names_hash_bucket_size") {
		t.Errorf("nginx -t accepts a 111-byte name without the bucket size: %v %s", err, out)
	}
}
