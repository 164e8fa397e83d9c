package dialect

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/berthd/berth/records"
	"github.com/berthd/berth/store"
)

// writeFiles writes name → content into a new temporary directory and
// returns the directory.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestErrors checks that each bad template fails with an *Error naming the
// right file, line and column, and that Execute then writes nothing.
func TestErrors(t *testing.T) {
	tests := []struct {
		name     string
		files    map[string]string // main.tmpl and includes
		includes []string
		opts     Options
		in       Input
		parse    bool   // the error is a parse error
		file     string // base name of Error.File
		line     int
		col      int
		msg      string // a substring of Error.Msg
		is       error  // errors.Is target, if any
	}{
		{
			name:  "syntax error: unclosed action",
			files: map[string]string{"main.tmpl": "line one\nline {{ .X "},
			parse: true, file: "main.tmpl", line: 2, col: 6, msg: "unclosed action",
		},
		{
			name:  "syntax error: second action unclosed",
			files: map[string]string{"main.tmpl": "{{ .A }} and {{ .B "},
			parse: true, file: "main.tmpl", line: 1, col: 14, msg: "unclosed action",
		},
		{
			name:  "syntax error: unexpected token",
			files: map[string]string{"main.tmpl": "x\n  {{ if .A }}{{ .B ) }}{{ end }}"},
			parse: true, file: "main.tmpl", line: 2, col: 20, msg: `unexpected right paren`,
		},
		{
			name:  "syntax error: missing end",
			files: map[string]string{"main.tmpl": "a\n{{ if .X }}\nb\n"},
			parse: true, file: "main.tmpl", line: 4, col: 1, msg: "unexpected EOF",
		},
		{
			name:  "syntax error: end without a block",
			files: map[string]string{"main.tmpl": "ok\n  ok {{ .A }} {{ end }}\n"},
			parse: true, file: "main.tmpl", line: 2, col: 18, msg: "unexpected {{end}}",
		},
		{
			name:  "unknown function",
			files: map[string]string{"main.tmpl": "{{/* c */}}\nx\n  {{ if true }}{{ upper (nosuch 1) }}{{ end }}\n"},
			parse: true, file: "main.tmpl", line: 3, col: 26, msg: `unknown function "nosuch"`,
		},
		{
			name:     "unknown function in an include",
			files:    map[string]string{"main.tmpl": `{{ template "inc.tmpl" . }}`, "inc.tmpl": "\n{{ define \"x\" }}{{ frobnicate }}{{ end }}"},
			includes: []string{"inc.tmpl"},
			parse:    true, file: "inc.tmpl", line: 2, col: 20, msg: `unknown function "frobnicate"`,
		},
		{
			name:  "nondeterministic function in the native dialect",
			files: map[string]string{"main.tmpl": "{{ randAlpha 5 }}"},
			parse: true, file: "main.tmpl", line: 1, col: 4, msg: "allow_nondeterministic = true",
		},
		{
			name:  "docker-gen function in the confd dialect",
			files: map[string]string{"main.tmpl": "{{ where . \"x\" 1 }}"},
			opts:  Options{Dialect: Confd},
			parse: true, file: "main.tmpl", line: 1, col: 4, msg: `unknown function "where"`,
		},
		{
			name:  "missing key with missingkey=error",
			files: map[string]string{"main.tmpl": "home={{ .Env.HOME }}\nnope={{ .Env.NOPE }}\n"},
			opts:  Options{MissingKeyError: true},
			in:    Input{Env: map[string]string{"HOME": "/root"}},
			file:  "main.tmpl", line: 2, col: 13, msg: `map has no entry for key "NOPE"`,
		},
		{
			name:  "missing key with missingkey=error, docker-gen",
			files: map[string]string{"main.tmpl": "{{ range $ }}{{ .Labels.nope }}{{ end }}"},
			opts:  Options{Dialect: DockerGen, MissingKeyError: true},
			in:    Input{Containers: []records.Container{{ID: "a", Labels: map[string]string{}}}},
			file:  "main.tmpl", line: 1, col: 24, msg: `map has no entry for key "nope"`,
		},
		{
			name:  "malformed JSON to mustFromJson (native)",
			files: map[string]string{"main.tmpl": `{{ (mustFromJson (key "/cfg")).a }}`},
			in:    Input{KVs: []store.KV{{Key: "/cfg", Value: []byte(`{"a":`)}}},
			file:  "main.tmpl", line: 1, col: 5, msg: "error calling mustFromJson: unexpected end of JSON input",
		},
		{
			name:  "malformed JSON to parseJson (docker-gen)",
			files: map[string]string{"main.tmpl": "\n{{ parseJson `[1,,]` }}"},
			opts:  Options{Dialect: DockerGen},
			file:  "main.tmpl", line: 2, col: 4, msg: "error calling parseJson: invalid character ','",
		},
		{
			name:  "malformed JSON to json (confd)",
			files: map[string]string{"main.tmpl": `{{ $c := json (getv "/cfg") }}{{ $c.a }}`},
			opts:  Options{Dialect: Confd, Prefix: "/app"},
			in:    Input{KVs: []store.KV{{Key: "/app/cfg", Value: []byte(`{oops}`)}}},
			file:  "main.tmpl", line: 1, col: 10, msg: "error calling json: invalid character 'o'",
		},
		{
			name:  "safeLs on empty data",
			files: map[string]string{"main.tmpl": "upstreams:\n{{ range safeLs \"/berth/upstreams\" }}{{ .Value }}{{ end }}"},
			file:  "main.tmpl", line: 2, col: 10, msg: `refusing to render: no data under "/berth/upstreams"`, is: ErrNoData,
		},
		{
			name:  "a function that panics",
			files: map[string]string{"main.tmpl": "{{ nindent -1 \"x\" }}"},
			file:  "main.tmpl", line: 1, col: 4, msg: "error calling nindent: strings: negative Repeat count",
		},
		{
			name:     "execution error inside an included template",
			files:    map[string]string{"main.tmpl": "{{ template \"row\" . }}", "inc.tmpl": "{{ define \"row\" }}\n  {{ getv \"/missing\" }}\n{{ end }}"},
			includes: []string{"inc.tmpl"},
			file:     "inc.tmpl", line: 2, col: 6, msg: "key does not exist: /missing",
		},
		{
			name:  "a record that is not JSON",
			files: map[string]string{"main.tmpl": "{{ len .Services }}"},
			in:    Input{KVs: []store.KV{{Key: records.ServiceKey("", "web", "h1", "c1"), Value: []byte("{bad")}}},
			file:  "main.tmpl", msg: "record /berth/services/web/h1/c1: invalid character",
		},
		{
			name:  "nil pointer",
			files: map[string]string{"main.tmpl": "{{ $.CurrentContainer.Name }}"},
			opts:  Options{Dialect: DockerGen},
			file:  "main.tmpl", line: 1, col: 5, msg: "nil pointer evaluating *records.Container.Name",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, tt.files)
			opts := tt.opts
			for _, inc := range tt.includes {
				opts.Includes = append(opts.Includes, filepath.Join(dir, inc))
			}
			tm, err := Parse(filepath.Join(dir, "main.tmpl"), opts)
			if !tt.parse {
				if err != nil {
					t.Fatalf("parse: %v", err)
				}
				var out bytes.Buffer
				err = tm.Execute(&out, tt.in)
				if out.Len() != 0 {
					t.Errorf("Execute wrote %q despite failing", out.String())
				}
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T) is not an *Error", err, err)
			}
			if filepath.Base(e.File) != tt.file || e.Line != tt.line || e.Col != tt.col || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("error %q\n  got  %s:%d:%d %q\n  want %s:%d:%d containing %q", err, filepath.Base(e.File), e.Line, e.Col, e.Msg, tt.file, tt.line, tt.col, tt.msg)
			}
			if filepath.IsAbs(e.File) != true {
				t.Errorf("error names %q, want the file's path", e.File)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.is)
			}
		})
	}
}

func TestMissingKeyDefault(t *testing.T) {
	tm, err := ParseString("t.tmpl", "[{{ .Env.NOPE }}]", Options{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := tm.Execute(&out, Input{Env: map[string]string{}}); err != nil {
		t.Fatal(err)
	}
	// Go's default for a missing map key, as docker-gen and confd render it.
	if out.String() != "[<no value>]" {
		t.Errorf("got %q, want [<no value>]", out.String())
	}
}

func TestNondeterministicAllowed(t *testing.T) {
	for _, name := range Nondeterministic() {
		if _, err := ParseString("t.tmpl", "{{ if false }}{{ "+name+" }}{{ end }}", Options{}); err == nil {
			t.Errorf("%s parses without allow_nondeterministic", name)
		}
		if _, err := ParseString("t.tmpl", "{{ if false }}{{ "+name+" }}{{ end }}", Options{AllowNondeterministic: true}); err != nil {
			t.Errorf("%s with allow_nondeterministic: %v", name, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	dir := writeFiles(t, map[string]string{"a.tmpl": "x", "b.tmpl": "y"})
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "b.tmpl"), []byte("z"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, main string
		opts       Options
		want       string
	}{
		{"missing file", filepath.Join(dir, "none.tmpl"), Options{}, "no such file"},
		{"missing include", filepath.Join(dir, "a.tmpl"), Options{Includes: []string{filepath.Join(dir, "none.tmpl")}}, "no such file"},
		{"same base name", filepath.Join(dir, "a.tmpl"), Options{Includes: []string{filepath.Join(dir, "b.tmpl"), filepath.Join(dir, "sub", "b.tmpl")}}, `same base name "b.tmpl"`},
		{"unknown dialect", filepath.Join(dir, "a.tmpl"), Options{Dialect: "jinja"}, `unknown template dialect "jinja"`},
	}
	for _, tt := range tests {
		_, err := Parse(tt.main, tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one containing %q", tt.name, err, tt.want)
		}
	}
}

// TestIncludes renders a template that defines and uses templates across
// files, and checks Files.
func TestIncludes(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"main.tmpl":    `{{ template "header" . }}{{ range $ }}{{ template "server.tmpl" . }}{{ end }}`,
		"server.tmpl":  `server {{ .IP }};{{ "\n" }}`,
		"defines.tmpl": `{{ define "header" }}# {{ len $ }} servers{{ "\n" }}{{ end }}`,
	})
	main := filepath.Join(dir, "main.tmpl")
	incs := []string{filepath.Join(dir, "server.tmpl"), filepath.Join(dir, "defines.tmpl")}
	tm, err := Parse(main, Options{Dialect: DockerGen, Includes: incs})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(tm.Files(), " "), strings.Join(append([]string{main}, incs...), " "); got != want {
		t.Errorf("Files() = %s, want %s", got, want)
	}
	var out bytes.Buffer
	in := Input{Containers: []records.Container{{ID: "a", IP: "10.0.0.1"}, {ID: "b", IP: "10.0.0.2"}}}
	if err := tm.Execute(&out, in); err != nil {
		t.Fatal(err)
	}
	if want := "# 2 servers\nserver 10.0.0.1;\nserver 10.0.0.2;\n"; out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
	if n := tm.Count(in); n != 2 {
		t.Errorf("Count = %d, want 2", n)
	}
	if tm.Dialect() != DockerGen {
		t.Errorf("Dialect() = %q", tm.Dialect())
	}
}

// TestDockerGenFromKVs renders docker-gen templates from container records
// in the store when the input has no container list.
func TestDockerGenFromKVs(t *testing.T) {
	cs := testContainers()
	in := Input{KVs: kvs(map[string]string{
		records.ContainerKey("/x", "h1", cs[0].ID): mustJSON(t, cs[0]),
		records.ContainerKey("/x", "h2", cs[1].ID): mustJSON(t, cs[1]),
		records.ServiceKey("/x", "web", "h1", "c"): `{"id":"c"}`,
	})}
	tm, err := ParseString("t.tmpl", `{{ range $ }}{{ .Name }} {{ end }}`, Options{Dialect: DockerGen, Prefix: "/x"})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := tm.Execute(&out, in); err != nil {
		t.Fatal(err)
	}
	if out.String() != "web-1 api-1 " {
		t.Errorf("got %q", out.String())
	}
	if n := tm.Count(in); n != 2 {
		t.Errorf("Count = %d, want 2 (containers only)", n)
	}
	nt, err := ParseString("t.tmpl", ``, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n := nt.Count(in); n != 3 {
		t.Errorf("native Count = %d, want 3 (every key)", n)
	}
}

// TestUnsortedKVs checks that key lookups work when the input breaks its
// promise to be sorted.
func TestUnsortedKVs(t *testing.T) {
	tm, err := ParseString("t.tmpl", `{{ key "/a" }} {{ key "/c" }} {{ range ls "/" }}{{ .Key }}{{ end }}`, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	in := Input{KVs: []store.KV{{Key: "/c", Value: []byte("C")}, {Key: "/b", Value: []byte("B")}, {Key: "/a", Value: []byte("A")}}}
	if err := tm.Execute(&out, in); err != nil {
		t.Fatal(err)
	}
	if out.String() != "A C abc" {
		t.Errorf("got %q", out.String())
	}
	if in.KVs[0].Key != "/c" {
		t.Error("Execute reordered the caller's slice")
	}
}

// TestConcurrentExecute runs one template from many goroutines (for -race)
// and checks every output.
func TestConcurrentExecute(t *testing.T) {
	tm, err := ParseString("t.tmpl", `{{ range $n, $l := .Services }}{{ $n }}={{ len $l }} {{ end }}{{ key "/k" }}`, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			v := strings.Repeat("v", i)
			in := Input{KVs: []store.KV{{Key: "/k", Value: []byte(v)}}}
			for range 20 {
				var out bytes.Buffer
				if err := tm.Execute(&out, in); err != nil {
					t.Error(err)
					return
				}
				if out.String() != v {
					t.Errorf("got %q, want %q", out.String(), v)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestRecordsFromKeys checks that the key names a record's service and
// host, whatever the record says.
func TestRecordsFromKeys(t *testing.T) {
	in := Input{KVs: kvs(map[string]string{
		records.ServiceKey("", "web", "h1", "a"):   `{"ip":"10.0.0.1","port":80}`,
		records.ServiceKey("", "web", "h0", "b"):   `{"id":"b","service":"web","ip":"10.0.0.2","port":80}`,
		records.ServiceKey("", "web", "h0", "x/y"): `not a record key: ignored`,
		"/berth/services/web":                      `not a record key either`,
		records.HostKey("", "h1"):                  `{"lease_id":7}`,
	})}
	tm, err := ParseString("t.tmpl", `{{ range $s, $l := .Services }}{{ range $l }}{{ $s }}:{{ .Service }}:{{ .Host }}{{ .ID }} {{ end }}{{ end }}{{ range $n, $h := .Hosts }}{{ $n }}={{ $h.Name }}/{{ $h.LeaseID }}{{ end }}`, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := tm.Execute(&out, in); err != nil {
		t.Fatal(err)
	}
	// Sorted by host, then id.
	if want := "web:web:h0b web:web:h1a h1=h1/7"; out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}

func TestWarn(t *testing.T) {
	tm, err := ParseString("t.tmpl", `a{{ warn "x conflicts" }}b{{ warn "x conflicts" }}{{ warn (printf "%d left out" 2) }}`, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var out bytes.Buffer
	if err := tm.Execute(&out, Input{Env: map[string]string{}, Warn: func(m string) { got = append(got, m) }}); err != nil {
		t.Fatal(err)
	}
	if out.String() != "ab" || strings.Join(got, "|") != "x conflicts|2 left out" {
		t.Errorf("output %q, warnings %q", out.String(), got)
	}
	// Without a receiver the warnings are dropped, the render goes on.
	out.Reset()
	if err := tm.Execute(&out, Input{Env: map[string]string{}}); err != nil || out.String() != "ab" {
		t.Errorf("without Warn: %q %v", out.String(), err)
	}
}
