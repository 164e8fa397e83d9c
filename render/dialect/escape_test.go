package dialect_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/records/recordstest"
	"github.com/berthd/berth/render/dialect"
)

// execNative renders text in the native dialect.
func execNative(t *testing.T, text string) (string, error) {
	t.Helper()
	tm, err := dialect.ParseString("t.tmpl", text, dialect.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	err = tm.Execute(&b, dialect.Input{Env: map[string]string{}})
	return b.String(), err
}

// call renders {{ fn .V }} over v.
func call(t *testing.T, fn, v string) (string, error) {
	t.Helper()
	tm, err := dialect.ParseString("t.tmpl", "{{ "+fn+" (env \"V\") }}", dialect.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	err = tm.Execute(&b, dialect.Input{Env: map[string]string{"V": v}})
	return b.String(), err
}

func TestEscapeFunctions(t *testing.T) {
	tests := []struct {
		fn, in, want string // want "" with err: fails
		err          bool
	}{
		{"nginxString", "plain", `"plain"`, false},
		{"nginxString", `a "b" \c; {d} #e 'f'`, `"a \"b\" \\c; {d} #e 'f'"`, false},
		{"nginxString", "bücher", `"bücher"`, false},
		{"nginxString", "a\nb", "", true},
		{"nginxString", "a\x00b", "", true},
		{"nginxString", "$host", "", true},
		{"nginxString", "\xff", "", true},
		{"nginxToken", "a.localhost", "a.localhost", false},
		{"nginxToken", `~^(?<s>.+)\.example\.com$`, `~^(?<s>.+)\.example\.com$`, false},
		{"nginxToken", `a\`, "", true},
		{"nginxToken", `a$b`, "", true},
		{"nginxToken", `~^(?<s>.+).example.com$`, `~^(?<s>.+).example.com$`, false},
		{"nginxToken", "$host", "", true},
		{"nginxToken", "a;b", "", true},
		{"nginxToken", "a b", "", true},
		{"nginxToken", "}", "", true},
		{"nginxToken", "", "", true},
		{"nginxComment", "web-1\n}\nserver {", "web-1?}?server {", false},
		{"nginxComment", "bü", "b??", false},
		{"haproxyString", "a b#c$d", `'a b#c$d'`, false},
		{"haproxyString", `it's "$x" \`, `"it's \"\$x\" \\"`, false},
		{"haproxyString", "a\nb", "", true},
		{"shellQuote", "it's $(id) `id`", `'it'\''s $(id) ` + "`id`'", false},
		{"shellQuote", "a\x00", "", true},
		{"jsonString", "a\"<b>\n\u2028", `"a\"<b>\n\u2028"`, false},
		{"checkHost", "good.localhost", "", false},
		{"checkPath", "/ok/", "", false},
		{"checkProto", "grpc", "", false},
		{"checkService", "web", "", false},
		{"checkIP", "10.0.0.2", "", false},
		{"checkPort", "8080", "", false},
	}
	for _, tt := range tests {
		got, err := call(t, tt.fn, tt.in)
		if tt.err {
			if err == nil {
				t.Errorf("%s(%q) = %q, want an error", tt.fn, tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s(%q) = %q, %v; want %q", tt.fn, tt.in, got, err, tt.want)
		}
	}
	for _, fn := range []string{"checkHost", "checkPath", "checkProto", "checkService", "checkIP", "checkPort"} {
		if got, err := call(t, fn, "bad;value"); err != nil || got == "" {
			t.Errorf("%s(bad;value) = %q, %v; want a reason", fn, got, err)
		}
	}
}

// TestEscapesThroughRealParsers writes every corpus value through each
// escaping function into its format and has the real parser read it back:
// nginx serves each nginxString as a response body and each nginxToken as
// a location; /bin/sh echoes each shellQuote; encoding/json decodes each
// jsonString. The value must come back byte for byte, or the function must
// have failed.
func TestEscapesThroughRealParsers(t *testing.T) {
	values := []string{"plain", `a"b`, `a\b`, "it's", "a;b{c}#d", "say \"$\"", "ü", "`id`", "\\\"", `\`}
	for _, v := range recordstest.Corpus() {
		if len(v.Value) < 4096 {
			values = append(values, v.Value)
		}
	}
	// nginx
	n := testenv.NewNginx(t)
	var conf strings.Builder
	conf.WriteString(n.Prelude())
	fmt.Fprintf(&conf, "server {\n    listen %s;\n", n.Addr)
	want := map[string]string{}
	for i, v := range values {
		s, err := call(t, "nginxString", v)
		if err != nil {
			if !strings.ContainsAny(v, "$\n\r\t\x00\x1b\x7f") {
				t.Errorf("nginxString(%q) failed: %v", v, err)
			}
			continue
		}
		fmt.Fprintf(&conf, "    location = /s%d { default_type text/plain; return 200 %s; }\n", i, s)
		want[fmt.Sprintf("/s%d", i)] = v
		if tok, err := call(t, "nginxToken", v); err == nil {
			fmt.Fprintf(&conf, "    location = /t%d/%s { default_type text/plain; return 200 token; }\n", i, tok)
		}
	}
	conf.WriteString("    location / { return 404; }\n}\n}\n")
	if err := os.WriteFile(n.Conf, []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	n.Start(t)
	for path, v := range want {
		code, body, err := n.Get("", path)
		if err != nil || code != 200 || body != strings.TrimSpace(v) {
			t.Errorf("nginx %s: %d %q, %v; want %q", path, code, body, err, v)
		}
	}
	// shell
	for _, v := range values {
		q, err := call(t, "shellQuote", v)
		if err != nil {
			if !strings.Contains(v, "\x00") {
				t.Errorf("shellQuote(%q): %v", v, err)
			}
			continue
		}
		out, err := exec.Command("/bin/sh", "-c", "printf %s "+q).Output()
		if err != nil || string(out) != v {
			t.Errorf("sh: %q → %q, %v", v, out, err)
		}
	}
	// JSON
	for _, v := range values {
		q, _ := call(t, "jsonString", v)
		var back string
		if err := json.Unmarshal([]byte(q), &back); err != nil || back != strings.ToValidUTF8(v, "\uFFFD") {
			t.Errorf("json: %q → %s → %q, %v", v, q, back, err)
		}
	}
}

// TestEscapeFunctionsNotInDockerGen: the docker-gen dialect stays
// docker-gen's function set (its output is docker-gen's, byte for byte).
func TestEscapeFunctionsNotInDockerGen(t *testing.T) {
	_, err := dialect.ParseString("t.tmpl", `{{ nginxString "a" }}`, dialect.Options{Dialect: dialect.DockerGen})
	if err == nil || !strings.Contains(err.Error(), "nginxString") {
		t.Errorf("docker-gen dialect knows nginxString: %v", err)
	}
	if out, err := execNative(t, `{{ nginxString "a b" }}`); err != nil || out != `"a b"` {
		t.Errorf("native: %q, %v", out, err)
	}
}
