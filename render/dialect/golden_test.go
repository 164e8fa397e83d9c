package dialect

import (
	"bytes"
	"cmp"
	"encoding/json"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"text/template/parse"
	"time"

	"github.com/berthd/berth/certs"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/store"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// goldenCase renders text with opts against in; the output, or "ERROR: "
// and the error, must equal testdata/golden/<dialect>/<name>.golden.
type goldenCase struct {
	name string
	text string
	opts Options
	in   Input
}

// runGolden runs the cases of dialect d and checks that, together, they
// call every function of the dialect.
func runGolden(t *testing.T, d Name, cases []goldenCase) {
	t.Helper()
	called := map[string]bool{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			opts.Dialect = d
			tm, err := ParseString(tc.name+".tmpl", tc.text, opts)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			var out bytes.Buffer
			if err := tm.Execute(&out, tc.in); err != nil {
				out.Reset()
				out.WriteString("ERROR: " + err.Error() + "\n")
			}
			checkGolden(t, filepath.Join("testdata", "golden", string(d), tc.name+".golden"), out.Bytes())
		})
		for _, f := range calledFunctions(t, tc.text) {
			called[f] = true
		}
	}
	names, err := funcNames(d, Options{AllowNondeterministic: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if !called[n] {
			t.Errorf("dialect %s: no golden case calls %s", d, n)
		}
	}
}

// checkGolden compares got with the golden file, or rewrites it with
// -update.
func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// calledFunctions returns the names of the functions text calls.
func calledFunctions(t *testing.T, text string) []string {
	t.Helper()
	tree := parse.New("t")
	tree.Mode = parse.SkipFuncCheck
	set := map[string]*parse.Tree{}
	if _, err := tree.Parse(text, "", "", set); err != nil {
		t.Fatalf("parse %q: %v", text, err)
	}
	var out []string
	for _, tr := range set {
		walk(tr.Root, func(n parse.Node) bool {
			if id, ok := n.(*parse.IdentifierNode); ok {
				out = append(out, id.Ident)
			}
			return true
		})
	}
	return out
}

// kvs builds a sorted snapshot from key/value pairs.
func kvs(pairs map[string]string) []store.KV {
	out := make([]store.KV, 0, len(pairs))
	for _, k := range slices.Sorted(maps.Keys(pairs)) {
		out = append(out, store.KV{Key: k, Value: []byte(pairs[k]), ModRevision: 7})
	}
	return out
}

func mustJSON(t testing.TB, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var started = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// testEnv is the environment of every golden case.
var testEnv = map[string]string{"HOME": "/home/berth", "DEFAULT_HOST": "example.org", "EMPTY": ""}

// testContainers are two containers in docker-gen's shape.
func testContainers() []records.Container {
	return []records.Container{
		{
			ID: "aaaaaaaaaaaa1111", Name: "web-1", Hostname: "aaaaaaaaaaaa", Created: started,
			Addresses: []records.Address{{IP: "10.0.0.2", Port: "80", Proto: "tcp", HostPort: "8080", HostIP: "0.0.0.0"}, {IP: "10.0.0.2", Port: "443", Proto: "tcp"}},
			Networks:  []records.Network{{Name: "bridge", IP: "10.0.0.2", Gateway: "10.0.0.1", IPPrefixLen: 24}, {Name: "front", IP: "10.1.0.2", Aliases: []string{"web"}}},
			Gateway:   "10.0.0.1", NetworkMode: "bridge", IP: "10.0.0.2",
			Image:   records.DockerImage{Registry: "registry.example", Repository: "shop/web", Tag: "1.2"},
			Env:     map[string]string{"VIRTUAL_HOST": "a.example,b.example", "VIRTUAL_PORT": "80", "PATH": "/bin"},
			Labels:  map[string]string{"com.example.tier": "front", "com.example.weight": "5"},
			Volumes: map[string]records.Volume{"/data": {Path: "/data", HostPath: "/srv/data", ReadWrite: true}},
			Mounts:  []records.Mount{{Name: "data", Source: "/srv/data", Destination: "/data", Driver: "local", Mode: "rw", RW: true}},
			State:   records.ContainerState{Running: true, Health: records.ContainerHealth{Status: "healthy"}},
		},
		{
			ID: "bbbbbbbbbbbb2222", Name: "api-1", Hostname: "bbbbbbbbbbbb", Created: started.Add(time.Hour),
			Addresses: []records.Address{{IP: "10.0.0.3", Port: "8000", Proto: "tcp"}},
			Networks:  []records.Network{{Name: "bridge", IP: "10.0.0.3", Gateway: "10.0.0.1", IPPrefixLen: 24}},
			Gateway:   "10.0.0.1", NetworkMode: "bridge", IP: "10.0.0.3",
			Image:  records.DockerImage{Repository: "api", Tag: "latest"},
			Env:    map[string]string{"VIRTUAL_HOST": "api.example", "PATH": "/bin"},
			Labels: map[string]string{"com.example.tier": "back"},
			State:  records.ContainerState{Running: true, Health: records.ContainerHealth{Status: "starting"}},
		},
	}
}

// nativeInput is the snapshot of the native golden cases: two services,
// their containers and hosts under /berth, and configuration keys.
func nativeInput(t testing.TB) Input {
	inst := func(svc, host, id, ip string, port int) string {
		return mustJSON(t, records.Instance{ID: id, Name: svc + "-" + id, Service: svc, Host: host, IP: ip, Port: port,
			Ports: []records.Port{{Port: port, Proto: "tcp"}}, Image: svc + ":1", Health: records.HealthHealthy,
			State: records.StateRunning, Weight: 1, StartedAt: started, Labels: map[string]string{"tier": svc}})
	}
	cs := testContainers()
	pairs := map[string]string{
		records.ServiceKey("", "web", "h2", "c3"): inst("web", "h2", "c3", "10.0.1.3", 80),
		records.ServiceKey("", "web", "h1", "c2"): inst("web", "h1", "c2", "10.0.0.2", 80),
		records.ServiceKey("", "web", "h1", "c1"): inst("web", "h1", "c1", "10.0.0.1", 80),
		records.ServiceKey("", "api", "h1", "c4"): inst("api", "h1", "c4", "fd00::4", 8000),
		records.ContainerKey("", "h1", cs[0].ID):  mustJSON(t, cs[0]),
		records.ContainerKey("", "h1", cs[1].ID):  mustJSON(t, cs[1]),
		records.HostKey("", "h1"):                 mustJSON(t, records.Host{Name: "h1", LeaseID: 42, Version: "v1", StartedAt: started}),
		records.HostKey("", "h2"):                 mustJSON(t, records.Host{Name: "h2", LeaseID: 43, Version: "v1", StartedAt: started}),
		"/config/app/name":                        "shop",
		"/config/app/port":                        "8080",
		"/config/app/db/host":                     "db.internal",
		"/config/app/db/port":                     "5432",
		"/config/app/json":                        `{"a":1,"b":[true,null]}`,
		"/config/hosts/h1":                        "10.0.0.1",
		"/config/hosts/h2":                        "10.0.0.2",
	}
	return Input{Revision: 1234, KVs: kvs(pairs), Env: testEnv}
}

// liveInput is two proxied services for {{endpoints}}: one draining,
// one weighted, one with a bad address (reported, left out).
func liveInput(t testing.TB) Input {
	inst := func(id, ip string, port int, state records.State, weight int, env map[string]string) string {
		return mustJSON(t, records.Instance{ID: id, Name: "web-" + id, Service: "web", Host: "h1", IP: ip, Port: port, Env: env, State: state, Weight: weight})
	}
	vh := map[string]string{"VIRTUAL_HOST": "shop.localhost, API.localhost"}
	return Input{Revision: 77, KVs: kvs(map[string]string{
		records.ServiceKey("", "web", "h1", "c1"): inst("c1", "10.0.0.1", 80, records.StateRunning, 3, vh),
		records.ServiceKey("", "web", "h1", "c2"): inst("c2", "fd00::2", 80, records.StateDraining, 1, vh),
		records.ServiceKey("", "web", "h1", "c3"): inst("c3", "10.0.0.3;", 80, records.StateRunning, 1, vh),
		records.ServiceKey("", "rpc", "h1", "c4"): inst("c4", "10.0.0.4", 50051, records.StateRunning, 1, map[string]string{"VIRTUAL_HOST": "rpc.localhost", "VIRTUAL_PROTO": "grpc", "VIRTUAL_PATH": "/svc/"}),
	}), Env: testEnv}
}

// httpsInput is liveInput with HTTPS settings and a certificate store:
// rpc.localhost asks for a certificate by CERT_NAME, and for nohttp.
func httpsInput(t testing.TB) Input {
	in := liveInput(t)
	inst := mustJSON(t, records.Instance{ID: "c5", Name: "rpc-c5", Service: "rpc", Host: "h1", IP: "10.0.0.5", Port: 50051, State: records.StateRunning,
		Env: map[string]string{"VIRTUAL_HOST": "rpc.localhost, bad;name", "CERT_NAME": "shared", "HTTPS_METHOD": "nohttp", "HSTS": "max-age=60; preload"}})
	in.KVs = append(slices.Clone(in.KVs), store.KV{Key: records.ServiceKey("", "rpc", "h1", "c5"), Value: []byte(inst)})
	slices.SortFunc(in.KVs, func(a, b store.KV) int { return cmp.Compare(a.Key, b.Key) })
	in.Certs = certs.NewSet("/c", []certs.Cert{{Name: "shop.localhost", CertFile: "/c/shop.localhost.crt"}, {Name: "shared", CertFile: "/c/shared.crt"}})
	return in
}

// withCatalog is in with a catalog of fixed answers.
func withCatalog(in Input, data map[string][]string) Input {
	in.Catalog = &answers{data: data}
	return in
}

func TestGoldenNative(t *testing.T) {
	in := nativeInput(t)
	allow := Options{AllowNondeterministic: true}
	cases := []goldenCase{
		{name: "services", in: in, text: `revision {{ .Revision }}
{{- range $name, $list := .Services }}
upstream {{ $name }} {
{{- range $list }}
  server {{ .Address }} weight={{ .Weight }}; # {{ .Host }}/{{ .ID }} {{ .Health }} {{ .State }} {{ .Name }} {{ .Image }} {{ .StartedAt.Format "2006-01-02" }} ports={{ range .Ports }}{{ .Port }}/{{ .Proto }}{{ end }} tier={{ .Labels.tier }}
{{- end }}
}
{{- end }}
`},
		{name: "containers_hosts_env", in: in, text: `{{ range .Containers }}{{ .Name }} {{ .Image.Repository }} {{ .IP }} running={{ .State.Running }}
{{ end }}{{ range $n, $h := .Hosts }}{{ $n }} lease={{ $h.LeaseID }} {{ $h.Version }}
{{ end }}home={{ .Env.HOME }} env={{ env "DEFAULT_HOST" }} expand={{ expandenv "$HOME/x" }}
`},
		{name: "consul_template_keys", in: in, text: `key={{ key "/config/app/name" }} nolead={{ key "config/app/port" }}
default={{ keyOrDefault "/config/app/missing" "fallback" }} present={{ keyOrDefault "/config/app/name" "fallback" }}
exists={{ keyExists "/config/app/name" }} {{ keyExists "/config/app/missing" }}
ls:{{ range ls "/config/app" }} {{ .Key }}={{ .Value }}{{ end }}
tree:{{ range tree "/config/app/" }} {{ .Key }}={{ .Value }}{{ end }}
safeLs:{{ range safeLs "/config/hosts" }} {{ .Key }}@{{ .Path }}#{{ .ModRevision }}{{ end }}
safeTree:{{ range safeTree "config/hosts" }} {{ .Key }}{{ end }}
empty ls:{{ range ls "/nothing" }}x{{ else }} none{{ end }}
`},
		{name: "key_missing", in: in, text: `{{ key "/config/app/missing" }}`},
		{name: "safeLs_empty", in: in, text: `{{ range safeLs "/nothing/here" }}{{ .Key }}{{ end }}`},
		{name: "safeTree_empty", in: in, text: `{{ range safeTree "/nothing" }}{{ .Key }}{{ end }}`},
		{name: "confd_keys", in: in, text: `getv={{ getv "/config/app/name" }} default={{ getv "/config/app/nope" "dflt" }}
getvs={{ getvs "/config/hosts/*" }}
gets={{ range gets "/config/app/db/*" }} {{ .Key }}={{ .Value }}{{ end }}
lsdir={{ lsdir "/config" }} {{ lsdir "/config/app" }}
exists={{ exists "/config/app/port" }} {{ exists "/config/app" }}
`},
		{name: "sprig_overridden_by_docker_gen", in: in, text: `{{ contains "ell" "hello" }} {{ dir "/a/b/c" }} {{ keys (dict "b" 1 "a" 2 "c" 3) }} {{ keys (dict "z" 1) (dict "y" 2 "x" 3) }} {{ replace "a" "b" "banana" }} {{ split "," "x,y" | toJson }} {{ coalesce "" 0 "first" "second" }} {{ get (dict "k" "v") "k" }}
`},
		{name: "nondeterministic_allowed", in: in, opts: allow, text: nondeterministicText},
		{name: "sprig_strings", in: in, text: sprigStrings},
		{name: "sprig_lists", in: in, text: sprigLists},
		{name: "sprig_dicts", in: in, text: sprigDicts},
		{name: "sprig_math", in: in, text: sprigMath},
		{name: "sprig_types_defaults", in: in, text: sprigTypes},
		{name: "sprig_encoding", in: in, text: sprigEncoding},
		{name: "sprig_regex", in: in, text: sprigRegex},
		{name: "sprig_paths_urls_semver", in: in, text: sprigPaths},
		{name: "sprig_dates", in: in, text: sprigDates},
		{name: "sprig_fail", in: in, text: `before {{ fail "stop here" }}`},
		{name: "warn", in: in, text: `before{{ warn "reported, not rendered" }} after`},
		{name: "endpoints", in: liveInput(t), text: `{{ range $u := (endpoints .Services).Upstreams }}{{ $u.Name }} {{ $u.Host }}{{ $u.Path }} {{ $u.Proto }}:{{ range $u.Servers }} {{ .ID }}={{ .Addr }}/{{ .Weight }}{{ if .Draining }}/draining{{ end }}{{ end }}
{{ end }}{{ upstreamName "a.localhost" "/api/" }} {{ upstreamName "*.example.com" "/" }}
`},
		{name: "httpsHosts", in: httpsInput(t), text: `{{ $t := httpsHosts .Services .Certs }}{{ range $h := keys $t | sortAlpha }}{{ $x := index $t $h }}{{ $h }} tls={{ $x.TLS }} redirect={{ $x.Redirect }} nohttp={{ $x.NoHTTP }} plain={{ $x.Plain }} hsts={{ $x.HSTS }}{{ if $x.Cert }} cert={{ $x.Cert.Name }}/{{ $x.Cert.Via }} {{ $x.Cert.CertFile }}{{ end }}
{{ end }}{{ (.Certs.For "a.shop.localhost" "").Name }} {{ .Certs.Len }} {{ .Certs.Dir }} {{ .Certs.Default }}
`},
		{name: "escaping", in: in, text: `{{ nginxString "a \"b\" \\c; {d}" }}|{{ nginxToken "~^(?<s>.+)\\.example\\.com$" }}|{{ nginxComment "web-1\n}\nserver {" }}
{{ haproxyString "a b#c" }}|{{ haproxyString "it's $HOME" }}|{{ shellQuote "it's $(id)" }}|{{ jsonString "a\"<b>\n" }}
{{ checkHost "good.localhost" }}|{{ checkHost "bad;host" }}|{{ checkPath "/ok/" }}|{{ checkPath "ok" }}|{{ checkProto "grpc" }}|{{ checkProto "gopher" }}
{{ checkPort "8080" }}|{{ checkPort "0" }}|{{ checkIP "10.0.0.2" }}|{{ checkIP "10.0.0.2;" }}|{{ checkService "web" }}|{{ checkService "../../hosts/evil" }}
`},
		{name: "nginxString_fails", in: in, text: `{{ nginxString "$host" }}`},
		{name: "nginxToken_fails", in: in, text: `{{ nginxToken "a;b" }}`},
		{name: "date_needs_time", in: in, text: `{{ date "2006" "not a time" }}`},
		{name: "durationRound_of_time", in: in, text: `{{ durationRound (toDate "2006-01-02" "2020-01-01") }}`},
		// The catalog functions over in-memory answers (package catalog
		// renders them from a real Consul, against consul-template).
		{name: "catalog", in: withCatalog(in, map[string][]string{"service web": {"web-1", "web-2"}, "service prod.web any": {"web-1"}, "services": {"api", "web"}, "nodes": {"n1", "n2"}, "node n1": {"n1"}}),
			text: `service: {{ range service "web" }}{{ . }} {{ end }}tagged: {{ service "prod.web" "any" }} services: {{ services }} nodes: {{ nodes }} node: {{ node "n1" }} key: {{ key "/config/app/name" }}
`},
		{name: "catalog_pending", in: withCatalog(in, nil), text: `{{ range service "web" }}{{ . }}{{ end }}{{ nodes }}`},
	}
	runGolden(t, Native, cases)
}

func TestGoldenDockerGen(t *testing.T) {
	cs := testContainers()
	in := Input{
		Containers: cs, Env: testEnv, CurrentContainerID: cs[1].ID,
		Docker: records.Docker{Name: "berth-host", NumContainers: 2, NumImages: 3, Version: "28.0.0", ApiVersion: "1.51",
			GoVersion: "go1.26", OperatingSystem: "Debian", Architecture: "x86_64"},
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "snippet.conf"), []byte("included line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	fileIn := in
	fileIn.Env = map[string]string{"DIR": dir}
	cases := []goldenCase{
		{name: "context", in: in, text: `{{ len $ }} containers; docker {{ $.Docker.Name }} {{ $.Docker.NumContainers }} {{ $.Docker.NumImages }} {{ $.Docker.Version }} {{ $.Docker.ApiVersion }} {{ $.Docker.GoVersion }} {{ $.Docker.OperatingSystem }} {{ $.Docker.Architecture }} current={{ $.Docker.CurrentContainerID }}
current name={{ $.CurrentContainer.Name }} env={{ $.Env.DEFAULT_HOST }} {{ .Env.HOME }}
{{ range $ }}
{{ .ID }} {{ .Name }} {{ .Hostname }} {{ .Created.Format "2006-01-02T15:04" }} {{ .NetworkMode }} {{ .Gateway }} {{ .IP }} image={{ .Image.Registry }}/{{ .Image.Repository }}:{{ .Image.Tag }}
  {{- range .Addresses }} addr={{ .IP }}:{{ .Port }}/{{ .Proto }}->{{ .HostIP }}:{{ .HostPort }}{{ end }}
  {{- range .Networks }} net={{ .Name }}:{{ .IP }}/{{ .IPPrefixLen }}{{ end }}
  {{- range $k, $v := .Volumes }} vol={{ $k }}:{{ $v.HostPath }}:{{ $v.ReadWrite }}{{ end }}
  {{- range .Mounts }} mount={{ .Source }}->{{ .Destination }}{{ end }} running={{ .State.Running }} health={{ .State.Health.Status }}

{{ end }}
`},
		{name: "keep_blank_lines", in: in, opts: Options{KeepBlankLines: true}, text: "a\n\n  \nb\n"},
		{name: "where", in: in, text: `where: {{ range where $ "Env.VIRTUAL_PORT" "80" }}{{ .Name }} {{ end }}
whereNot: {{ range whereNot $ "Image.Tag" "latest" }}{{ .Name }} {{ end }}
dotted label path (split at every dot, so never found): {{ len (where $ "Labels.com.example.tier" "front") }}
whereExist: {{ range whereExist $ "Env.VIRTUAL_PORT" }}{{ .Name }} {{ end }}
whereNotExist: {{ range whereNotExist $ "Env.VIRTUAL_PORT" }}{{ .Name }} {{ end }}
whereAny: {{ range whereAny $ "Env.VIRTUAL_HOST" "," (split "b.example,api.example" ",") }}{{ .Name }} {{ end }}
whereAll: {{ range whereAll $ "Env.VIRTUAL_HOST" "," (split "a.example,b.example" ",") }}{{ .Name }} {{ end }}
whereLabelExists: {{ range whereLabelExists $ "com.example.weight" }}{{ .Name }} {{ end }}
whereLabelDoesNotExist: {{ range whereLabelDoesNotExist $ "com.example.weight" }}{{ .Name }} {{ end }}
whereLabelValueMatches: {{ range whereLabelValueMatches $ "com.example.tier" "^b" }}{{ .Name }} {{ end }}
index path: {{ range where $ "Addresses.0.Port" "8000" }}{{ .Name }} {{ end }}
`},
		{name: "groupBy", in: in, text: `groupBy:{{ range $k, $v := groupBy $ "Image.Tag" }} {{ $k }}={{ len $v }}{{ end }}
groupByWithDefault:{{ range $k, $v := groupByWithDefault $ "Env.VIRTUAL_PORT" "none" }} {{ $k }}={{ len $v }}{{ end }}
groupByKeys: {{ groupByKeys $ "Image.Repository" }}
groupByMulti:{{ range $host, $cs := groupByMulti $ "Env.VIRTUAL_HOST" "," }} {{ $host }}={{ range $cs }}{{ .Name }}{{ end }}{{ end }}
groupByLabel:{{ range $k, $v := groupByLabel $ "com.example.weight" }} {{ $k }}={{ len $v }}{{ end }}
groupByLabelWithDefault:{{ range $k, $v := groupByLabelWithDefault $ "com.example.weight" "1" }} {{ $k }}={{ len $v }}{{ end }}
`},
		{name: "sort", in: in, text: `{{ range sortObjectsByKeysAsc $ "Name" }}{{ .Name }} {{ end }}
{{ range sortObjectsByKeysDesc $ "Name" }}{{ .Name }} {{ end }}
by time: {{ range sortObjectsByKeysDesc $ "Created" }}{{ .Name }} {{ end }} by bool: {{ range sortObjectsByKeysAsc $ "State.Running" }}{{ .Name }} {{ end }}
by int: {{ range sortObjectsByKeysAsc (list (dict "n" 10) (dict "n" 9) (dict "n" 100)) "n" }}{{ .n }} {{ end }}
no value: {{ range sortObjectsByKeysAsc $ "Env.VIRTUAL_PORT" }}{{ .Name }} {{ end }} pointers kept: {{ (first (sortObjectsByKeysAsc $ "Name")).PublishedAddresses }}
{{ sortStringsAsc (split "b,c,a" ",") }} {{ sortStringsDesc (split "b,c,a" ",") }}
`},
		{name: "strings", in: in, text: `{{ closest (split "a.example,example,b" ",") "www.a.example" }}
{{ coalesce nil "" "x" }}|{{ sprigCoalesce nil "" "x" }}
{{ "a\nb" | comment "# " }}
{{ contains $.Env "HOME" }} {{ contains $.Env "NOPE" }} {{ sprigContains "ell" "hello" }}
{{ replace "banana" "a" "o" 2 }} {{ sprigReplace "a" "o" "banana" }}
{{ split "a,b,c" "," }} {{ splitN "a,b,c" "," 2 }} {{ sprigSplit "," "a,b" | toJson }} {{ sprigSplitn "," 2 "a,b,c" | toJson }}
{{ toLower "MiXeD" }} {{ toUpper "MiXeD" }} {{ when true "yes" "no" }} {{ when false "yes" "no" }}
{{ intersect (split "a,b,c" ",") (split "c,a,d" ",") }} {{ keys $.Env }}
{{ queryEscape "a b&c" }} {{ parseBool "true" }} {{ sha1 "berth" }} {{ sprigDir "/a/b" }}
{{ json (dict "a" 1) }} {{ (parseJson "{\"x\":[1,2]}").x }}
{{ toYaml (dict "b" (list 1 2) "a" "x") }}{{ (fromYaml "a: [1, 2]").a }} {{ mustToYaml (list "x") }}{{ mustFromYaml "k: v" }}
`},
		{name: "files", in: fileIn, text: `exists={{ exists (printf "%s/snippet.conf" $.Env.DIR) }} {{ exists (printf "%s/none" $.Env.DIR) }}
include={{ include (printf "%s/snippet.conf" $.Env.DIR) }}missing=[{{ include (printf "%s/none" $.Env.DIR) }}]
dir={{ dir $.Env.DIR }} missing={{ dir (printf "%s/none" $.Env.DIR) }}
`},
		{name: "eval", in: in, text: `{{ define "upstream" }}upstream {{ .Name }};{{ end }}{{ define "none" }}plain{{ end }}{{ range $ }}{{ eval "upstream" . | upper }}
{{ end }}{{ eval "none" }}
`},
		{name: "validators", in: in, text: `{{ mustBeOneOf (list "http" "https") "https" }} {{ mustBeInt "-42" }} {{ mustBeIntInRange 1 10 "10" }}
{{ nginxMustParseHSTS "max-age=31536000" }}|{{ nginxMustParseHSTS " Max-Age=63072000; includeSubDomains; preload " }}|{{ nginxMustParseHSTS "max-age=60;includesubdomains" }}
{{ nginxQuote "plain" }}|{{ nginxQuote "has space" }}|{{ nginxQuote "a;b" }}|{{ nginxQuote "it's" }}|{{ nginxQuote "say \"hi\"" }}|{{ nginxQuote "\"already quoted\"" }}|{{ nginxQuote "esc\\;aped" }}|{{ nginxQuote "" }}|{{ nginxQuote "#lead" }}
`},
		{name: "mustBeOneOf_fails", in: in, text: `{{ mustBeOneOf (list "http" "https") "ftp" }}`},
		{name: "mustBeIntInRange_fails", in: in, text: `{{ mustBeIntInRange 1 10 "11" }}`},
		{name: "nginxMustParseHSTS_fails", in: in, text: `{{ nginxMustParseHSTS "max-age=60; preload" }}`},
		{name: "nginxQuote_fails", in: in, text: `{{ nginxQuote "it's \"both\"" }}`},
		{name: "parseJson_fails", in: in, text: `{{ parseJson "{not json" }}`},
		{name: "nondeterministic", in: in, text: nondeterministicText},
		{name: "sprig_strings", in: in, text: sprigStrings},
		{name: "sprig_lists", in: in, text: sprigLists},
		{name: "sprig_dicts", in: in, text: sprigDicts},
		{name: "sprig_math", in: in, text: sprigMath},
		{name: "sprig_types_defaults", in: in, text: sprigTypes},
		{name: "sprig_encoding", in: in, text: sprigEncoding},
		{name: "sprig_regex", in: in, text: sprigRegex},
		{name: "sprig_paths_urls_semver", in: in, text: sprigPaths},
		{name: "sprig_dates", in: in, text: sprigDates},
		{name: "sprig_fail", in: in, text: `before {{ fail "stop here" }}`},
	}
	runGolden(t, DockerGen, cases)
}

func TestGoldenConfd(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "exists.txt")
	if err := os.WriteFile(existing, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	in := Input{KVs: kvs(map[string]string{
		"/myapp/database/url":      "db.example.com",
		"/myapp/database/user":     "rob",
		"/myapp/upstream/app1":     "10.0.1.10:8080",
		"/myapp/upstream/app2":     "10.0.1.11:8080",
		"/myapp/upstream/app10":    "10.0.1.20:8080",
		"/myapp/services/a/config": `{"port": 80, "tags": ["x", "y"]}`,
		"/myapp/services/b/config": `{"port": 81, "tags": []}`,
		"/myapp/list":              `["one", "two"]`,
		"/myapp/b64":               "aGVsbG8=",
		"/myapp/flag":              "true",
		"/myapp/count":             "3",
		"/other/ignored":           "not under the prefix",
	}), Env: map[string]string{"FILE": existing, "REGION": "eu"}}
	opts := Options{Prefix: "/myapp"}
	cases := []goldenCase{
		{name: "memkv", in: in, opts: opts, text: `get: {{ (get "/database/url").Key }}={{ (get "/database/url").Value }}
gets:{{ range gets "/upstream/*" }} {{ .Key }}={{ .Value }}{{ end }}
getv: {{ getv "/database/user" }} {{ getv "/database/none" "default" }}
getvs: {{ getvs "/upstream/*" }}
ls: {{ ls "/upstream" }} {{ ls "/services" }} {{ ls "/database/url" }}
lsdir: {{ lsdir "/services" }} {{ lsdir "/" }} {{ lsdir "/upstream" }}
exists: {{ exists "/database/url" }} {{ exists "/database" }} {{ exists "/ignored" }}
`},
		{name: "getv_missing", in: in, opts: opts, text: `{{ getv "/database/none" }}`},
		{name: "get_missing", in: in, opts: opts, text: `{{ get "/nope" }}`},
		{name: "helpers", in: in, opts: opts, text: `{{ base "/a/b/c.conf" }} {{ dir "/a/b/c.conf" }} {{ split "a:b" ":" }} {{ join (split "a:b" ":") "-" }}
{{ toUpper "up" }} {{ toLower "DOWN" }} {{ contains "hello" "ell" }} {{ replace "a-b-c" "-" "_" -1 }} {{ trimSuffix "file.conf" ".conf" }}
{{ $m := map "k1" "v1" "k2" 2 }}{{ index $m "k1" }} {{ index $m "k2" }}
{{ range lsdir "/services" }}{{ $c := json (getv (printf "/services/%s/config" .)) }}{{ . }}:{{ $c.port }}:{{ $c.tags }} {{ end }}
{{ range jsonArray (getv "/list") }}{{ . }} {{ end }}
{{ base64Encode "hello" }} {{ base64Decode (getv "/b64") }} {{ parseBool (getv "/flag") }} {{ atoi (getv "/count") | add 1 }}
{{ add 7 3 }} {{ sub 7 3 }} {{ div 7 3 }} {{ mod 7 3 }} {{ mul 7 3 }} {{ seq 1 (atoi (getv "/count")) }}
{{ sortByLength (getvs "/upstream/*") }} {{ reverse (ls "/upstream") }} {{ range sortKVByLength (gets "/upstream/*") }}{{ .Key }} {{ end }}{{ range reverse (gets "/database/*") }}{{ .Key }} {{ end }}
{{ getenv "REGION" }} {{ getenv "NOPE" "fallback" }} [{{ getenv "NOPE" }}] {{ fileExists (getenv "FILE") }} {{ fileExists "/nonexistent/x" }}
{{ printf "%T" datetime }} {{ lookupIPV4 "localhost" }} {{ lookupIP "localhost" | len | lt 0 }} {{ lookupIPV6 "nonexistent.invalid" }} {{ lookupSRV "xmpp" "tcp" "nonexistent.invalid" }}
`},
		{name: "json_fails", in: in, opts: opts, text: `{{ json "{broken" }}`},
		{name: "jsonArray_fails", in: in, opts: opts, text: `{{ jsonArray "[1," }}`},
	}
	runGolden(t, Confd, cases)
}

// The sprig cases run in the native and the docker-gen dialect. They avoid
// the names docker-gen overrides (contains, dir, keys, replace, split,
// coalesce) and the nondeterministic functions, covered elsewhere.
const (
	sprigStrings = `{{ upper "hello" }} {{ lower "HELLO" }} {{ title "hello world" }} {{ untitle "Hello World" }} {{ substr 1 3 "hello" }} {{ repeat 3 "ab" }}
{{ trim "  x  " }} {{ trimAll "$" "$5.00$" }} {{ trimall "$" "$5$" }} {{ trimSuffix "-" "a-" }} {{ trimPrefix "-" "-a" }} {{ nospace "a b c" }}
{{ initials "First Try" }} {{ swapcase "This Is" }} {{ snakecase "FirstName" }} {{ camelcase "http_server" }} {{ kebabcase "FirstName" }}
{{ abbrev 5 "hello world" }} {{ abbrevboth 5 10 "1234 5678 9123" }} {{ trunc 5 "hello world" }} {{ trunc -5 "hello world" }}
{{ wrap 5 "hello world here" }}|{{ wrapWith 5 "+" "Hello World" }}|{{ hasPrefix "he" "hello" }} {{ hasSuffix "lo" "hello" }}
{{ quote "a" 1 }} {{ squote "a" }} {{ cat "a" "b" 3 }} {{ "a\nb" | indent 2 }}|{{ "a\nb" | nindent 2 }}|
{{ plural "one" "many" 2 }} {{ plural "one" "many" 1 }} {{ toString 12 }} {{ hello }} {{ splitList "," "a,b" }} {{ splitn "$" 2 "a$b$c" | toJson }} {{ toStrings (list 1 "a") }}
{{ join "-" (list "a" "b") }} {{ regexQuoteMeta "1.2" }}
`
	sprigLists = `{{ $l := list 1 2 3 4 }}{{ first $l }} {{ rest $l }} {{ last $l }} {{ initial $l }} {{ append $l 5 }} {{ push $l 5 }} {{ prepend $l 0 }}
{{ concat $l (list 9) }} {{ reverse $l }} {{ uniq (list 1 1 2) }} {{ without $l 2 3 }} {{ has 2 $l }} {{ compact (list 1 "" 2) }} {{ slice $l 1 3 }} {{ chunk 3 $l }}
{{ sortAlpha (list "b" "c" "a") }} {{ tuple 1 "two" }} {{ until 3 }} {{ untilStep 0 10 4 }} {{ seq 1 3 }}
{{ mustFirst $l }} {{ mustRest $l }} {{ mustLast $l }} {{ mustInitial $l }} {{ mustAppend $l 5 }} {{ mustPush $l 6 }} {{ mustPrepend $l 0 }}
{{ mustReverse $l }} {{ mustUniq (list 2 2) }} {{ mustWithout $l 1 }} {{ mustHas 9 $l }} {{ mustCompact (list "" "x") }} {{ mustSlice $l 2 }} {{ mustChunk 2 $l }}
`
	sprigDicts = `{{ $d := dict "a" 1 "b" 2 }}{{ get $d "a" }} {{ hasKey $d "b" }} {{ set $d "c" 3 | toJson }} {{ unset $d "c" | toJson }}
{{ pluck "a" $d (dict "a" 5) }} {{ pick $d "a" | toJson }} {{ omit $d "a" | toJson }} {{ values (dict "x" "y" "a" "b" "m" "n") }}
{{ merge (dict "a" 1) (dict "a" 2 "b" 3) | toJson }} {{ mergeOverwrite (dict "a" 1) (dict "a" 2) | toJson }}
{{ mustMerge (dict "a" 1) (dict "z" 0) | toJson }} {{ mustMergeOverwrite (dict "a" 1) (dict "a" 9) | toJson }}
{{ dig "a" "b" "none" (dict "a" (dict "b" "found")) }} {{ dig "a" "x" "none" (dict "a" (dict "b" "found")) }}
{{ deepCopy $d | toJson }} {{ mustDeepCopy (list 1 2) }}
`
	sprigMath = `{{ add 1 2 3 }} {{ add1 5 }} {{ sub 5 2 }} {{ div 7 2 }} {{ mod 7 2 }} {{ mul 2 3 4 }} {{ max 1 5 3 }} {{ min 4 2 6 }} {{ biggest 1 9 }}
{{ addf 1.5 2 }} {{ add1f 1.5 }} {{ subf 5 1.5 }} {{ divf 7 2 }} {{ mulf 1.5 2 }} {{ maxf 1 2.5 }} {{ minf 1 2.5 }}
{{ ceil 1.2 }} {{ floor 1.8 }} {{ round 3.14159 2 }} {{ atoi "42" }} {{ int "7" }} {{ int64 "8" }} {{ float64 "1.5" }} {{ toDecimal "0777" }}
`
	sprigTypes = `{{ default "d" "" }} {{ default "d" "set" }} {{ empty "" }} {{ empty "x" }} {{ all 1 "a" }} {{ any 0 "" 1 }} {{ ternary "y" "n" true }}
{{ typeOf 1 }} {{ typeIs "int" 1 }} {{ typeIsLike "int" 1 }} {{ kindOf "a" }} {{ kindIs "string" "a" }} {{ deepEqual (list 1) (list 1) }}
{{ fromJson "{\"a\":1}" }} {{ toJson (dict "a" (list 1)) }} {{ toPrettyJson (dict "a" 1) }} {{ toRawJson (dict "h" "<b>") }}
{{ mustFromJson "[1]" }} {{ mustToJson "x" }} {{ mustToPrettyJson (list 1) }} {{ mustToRawJson "&" }}
{{ env "HOME" }} {{ expandenv "${DEFAULT_HOST}:80" }}
`
	sprigEncoding = `{{ b64enc "berth" }} {{ b64dec "YmVydGg=" }} {{ b32enc "berth" }} {{ b32dec "MJSXE5DI" }}
{{ sha1sum "berth" }} {{ sha256sum "berth" }}
{{ sha512sum "berth" }}
{{ adler32sum "berth" }} {{ derivePassword 1 "long" "password" "user" "example.com" }}
`
	sprigRegex = `{{ regexMatch "^a.c$" "abc" }} {{ mustRegexMatch "x" "abc" }} {{ regexFindAll "[0-9]" "a1b22" -1 }} {{ mustRegexFindAll "[0-9]+" "a1b22" 1 }}
{{ regexFind "[a-z]+" "12ab34" }} {{ mustRegexFind "[0-9]+" "ab34" }} {{ regexReplaceAll "a(x*)b" "-ab-axxb-" "${1}W" }} {{ mustRegexReplaceAll "b" "abc" "B" }}
{{ regexReplaceAllLiteral "a(x*)b" "-ab-axxb-" "${1}" }} {{ mustRegexReplaceAllLiteral "b" "abc" "$" }} {{ regexSplit "z+" "pizza" -1 }} {{ mustRegexSplit "," "a,b" 1 }}
`
	sprigPaths = `{{ base "/a/b.txt" }} {{ clean "/a//b/../c" }} {{ ext "x.tar.gz" }} {{ isAbs "/a" }} {{ osBase "/a/b" }} {{ osClean "a/../b" }} {{ osDir "/a/b" }} {{ osExt "f.go" }} {{ osIsAbs "a" }}
{{ $u := urlParse "https://u:p@host.example:8443/p/a?q=1#frag" }}{{ $u.scheme }} {{ $u.host }} {{ $u.path }} {{ $u.query }} {{ $u.fragment }} {{ $u.userinfo }} {{ $u.hostname }}
{{ urlJoin (dict "scheme" "https" "host" "x.example" "path" "/a" "query" "b=1") }}
{{ $v := semver "1.2.3-beta.1+build" }}{{ $v.Major }} {{ $v.Minor }} {{ $v.Patch }} {{ $v.Prerelease }} {{ semverCompare ">=1.2.0" "1.3.0" }} {{ semverCompare "~1.2" "2.0.0" }}
`
	sprigDates = `{{ $t := toDate "2006-01-02 15:04" "2024-03-05 06:07" }}{{ date "2006-01-02T15:04" $t }} {{ dateInZone "15:04 MST" $t "UTC" }} {{ date_in_zone "2006" $t "UTC" }}
{{ htmlDate $t }} {{ htmlDateInZone $t "UTC" }} {{ unixEpoch $t }} {{ date "2006-01-02" 86400 }}
{{ dateModify "+1h" $t | date "15:04" }} {{ date_modify "-1h" $t | date "15:04" }} {{ mustDateModify "24h" $t | htmlDate }} {{ must_date_modify "30m" $t | date "15:04" }}
{{ mustToDate "2006-01-02" "2020-02-29" | htmlDate }} {{ duration "95" }} {{ durationRound "2h10m" }} {{ durationRound "400h" }}
`
	nondeterministicText = `{{ now | kindOf }} {{ ago (toDate "2006" "2000") | kindOf }} {{ randAlphaNum 8 | len }} {{ randAlpha 4 | len }} {{ randAscii 3 | len }} {{ randNumeric 5 | regexMatch "^[0-9]{5}$" }}
{{ randBytes 12 | b64dec | len }} {{ randInt 5 6 }} {{ shuffle "aa" }} {{ uuidv4 | len }} {{ bcrypt "pw" | hasPrefix "$2a$" }} {{ htpasswd "user" "pw" | hasPrefix "user:$2a$" }}
{{ encryptAES "key" "secret text" | decryptAES "key" }} {{ getHostByName "localhost" | kindOf }}
{{ genPrivateKey "ecdsa" | hasPrefix "-----BEGIN EC PRIVATE KEY-----" }} {{ $ca := genCA "berth-ca" 30 }}{{ $ca.Cert | hasPrefix "-----BEGIN CERTIFICATE-----" }}
{{ $key := genPrivateKey "ed25519" }}{{ (genCAWithKey "ca2" 30 $key).Key | eq $key }}
{{ $c := genSelfSignedCert "x.example" (list "127.0.0.1") (list "x.example") 30 }}{{ $c.Key | hasPrefix "-----BEGIN RSA PRIVATE KEY-----" }}
{{ (genSelfSignedCertWithKey "y.example" nil nil 30 $key).Key | eq $key }}
{{ (genSignedCert "z.example" nil (list "z.example") 30 $ca).Cert | hasPrefix "-----BEGIN CERTIFICATE-----" }}
{{ (genSignedCertWithKey "w.example" nil nil 30 $ca $key).Key | eq $key }}
{{ (buildCustomCert ($ca.Cert | b64enc) ($ca.Key | b64enc)).Cert | eq $ca.Cert }}
`
)

// funcNames returns the sorted names of every function of dialect d.
func funcNames(d Name, opts Options) ([]string, error) {
	opts.Dialect = d
	fs, err := functions(opts)
	if err != nil {
		return nil, err
	}
	return slices.SortedFunc(maps.Keys(fs.parse), cmp.Compare[string]), nil
}

// TestConfdDirectoryCoversEveryFunction checks that the templates of the
// confd directory rendered by TestConfdDirectory call every confd
// function.
func TestConfdDirectoryCoversEveryFunction(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "confd", "templates", "*.tmpl"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no templates: %v", err)
	}
	called := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range calledFunctions(t, string(b)) {
			called[n] = true
		}
	}
	names, err := funcNames(Confd, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if !called[n] {
			t.Errorf("testdata/confd/templates call no %s", n)
		}
	}
}

// TestMain pins the local time zone: sprig's date functions format in it,
// and the goldens must not depend on the machine's.
func TestMain(m *testing.M) {
	time.Local = time.UTC
	os.Exit(m.Run())
}
