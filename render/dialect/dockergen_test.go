package dialect

import (
	"reflect"
	"strings"
	"testing"

	"github.com/berthd/berth/records"
)

// TestDeepGet pins the field-path semantics of where, groupBy and
// sortObjectsByKeys to docker-gen's.
func TestDeepGet(t *testing.T) {
	s := struct{ X string }{"foo"}
	sp := &s
	c := records.Container{ID: "id", Env: map[string]string{"K": "v"}, Addresses: []records.Address{{Port: "80"}}}
	tests := []struct {
		name string
		item any
		path string
		want any
	}{
		{"no path", s, "", s},
		{"field", c, "ID", "id"},
		{"leading dot", c, ".ID", "id"},
		{"map", c, "Env.K", "v"},
		{"missing map key", c, "Env.NOPE", nil},
		{"missing field", c, "Nope", nil},
		{"slice then field", c, "Addresses.0.Port", "80"},
		{"pointer to container", &c, "Env.K", "v"},
		{"empty map keys", map[string]map[string]string{"": {"": "foo"}}, "..", "foo"},
		{"pointer to struct", sp, "X", "foo"},
		{"pointer to pointer", &sp, "X", nil},
		{"slice index", []string{"foo", "bar"}, "1", "bar"},
		{"slice out of bounds", []string{}, "0", nil},
		{"negative index", []string{"a"}, "-1", nil},
		{"index not a number", []string{"a"}, "x", nil},
		{"array index", [2]string{"foo", "bar"}, "1", "bar"},
		{"map with non-string keys", map[int]string{1: "a"}, "1", nil},
		{"into a string", "abc", "x", nil},
	}
	for _, tt := range tests {
		if got := deepGet(tt.item, tt.path); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: deepGet(%v, %q) = %#v, want %#v", tt.name, tt.item, tt.path, got, tt.want)
		}
	}
}

func TestRemoveBlankLines(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"\r\n\r\n", ""},
		{"line1\nline2", "line1\nline2"},
		{"line1\n\nline2", "line1\nline2"},
		{"\n\n\n\nline1\n\nline2", "line1\nline2"},
		{"\n\n  \n \t\n \n", ""},
		{"line1\r\n\r\nline2", "line1\r\nline2"},
		{"line1\n", "line1\n"},
		{"a\n\u0085\u00a0\nb", "a\nb"},
	}
	for _, tt := range tests {
		if got := string(removeBlankLines([]byte(tt.in))); got != tt.want {
			t.Errorf("removeBlankLines(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestListValue(t *testing.T) {
	values := []string{"a", "b"}
	if v, err := listValue("f", &values); err != nil || v.Len() != 2 {
		t.Errorf("pointer to slice: %v, %v", v, err)
	}
	if _, err := listValue("f", "abc"); err == nil {
		t.Error("a string is not a list")
	}
	if _, err := groupBy([]any{map[string]any{"k": 1}}, "k"); err == nil {
		t.Error("groupBy on a non-string value must fail")
	}
}

func TestNginxQuote(t *testing.T) {
	type tc struct{ in, want string }
	var tests []tc
	for _, c := range []string{"{", "}", ";", "#", " ", "'"} {
		tests = append(tests,
			tc{"foo" + c + "bar", `"foo` + c + `bar"`},     // unescaped: quoted
			tc{`foo\\` + c + "bar", `"foo\\` + c + `bar"`}, // wrongly escaped (two backslashes): quoted
			tc{`"foo` + c + `bar"`, `"foo` + c + `bar"`},   // already quoted: as is
			tc{`foo\` + c + "bar", `foo\` + c + "bar"},     // escaped: as is
		)
	}
	tests = append(tests,
		tc{`foo"bar`, `'foo"bar'`},
		tc{`foo\\"bar`, `'foo\\"bar'`},
		tc{`'foo"bar'`, `'foo"bar'`},
		tc{`foo\"bar`, `foo\"bar`},
		tc{"  padded  ", "padded"},
		tc{"", ""},
	)
	for _, tt := range tests {
		got, err := nginxQuote(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("nginxQuote(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"foo\nbar", "a\rb", `foo'bar"baz`} {
		if got, err := nginxQuote(bad); err == nil || got != "" {
			t.Errorf("nginxQuote(%q) = %q, %v; want an error", bad, got, err)
		}
	}
	quoted := []struct {
		in   string
		q    byte
		want bool
	}{
		{`'`, '\'', true}, {`foo'bar`, '\'', true}, {`'foobar`, '\'', true}, {`foobar'`, '\'', true},
		{`'foobar\'`, '\'', true}, {`'foo'bar'`, '\'', true}, {`foo\'bar`, '\'', false}, {`foobar\'`, '\'', false},
		{`"foo'bar"`, '\'', false}, {``, '\'', false}, {`''`, '\'', false},
		{`"`, '"', true}, {`"foo"bar"`, '"', true}, {`\"foobar`, '"', false}, {`'foo"bar'`, '"', false}, {`""`, '"', false},
	}
	for _, tt := range quoted {
		if got := unescapedQuote(tt.in, tt.q); got != tt.want {
			t.Errorf("unescapedQuote(%q, %q) = %v, want %v", tt.in, tt.q, got, tt.want)
		}
	}
	escaped := []struct {
		in   string
		i    int
		want bool
	}{{`\a`, 0, false}, {`\a`, -1, false}, {`abc`, 4, false}, {`abc`, 2, false}, {`a\b`, 2, true}, {`a\\b`, 3, false}, {`a\\\b`, 4, true}}
	for _, tt := range escaped {
		if got := escapedAt(tt.in, tt.i); got != tt.want {
			t.Errorf("escapedAt(%q, %d) = %v, want %v", tt.in, tt.i, got, tt.want)
		}
	}
}

func TestNginxMustParseHSTS(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{in: "off", want: "off"},
		{in: "max-age=300", want: "max-age=300"},
		{in: "max-age=300; includeSubDomains", want: "max-age=300; includeSubDomains"},
		{in: " max-age=31536000 ; includeSubDomains ; preload ", want: "max-age=31536000; includeSubDomains; preload"},
		{in: "Max-Age=31536000; includesubdomains; PRELOAD", want: "max-age=31536000; includeSubDomains; preload"},
		{in: " ", err: "cannot be empty"},
		{in: "max-age=", err: "invalid max-age directive"},
		{in: "max-age=300; server {}", err: "unknown HSTS directive: server {}"},
		{in: "max-age=300foo", err: "invalid max-age directive"},
		{in: "max-age=+300", err: "invalid max-age directive"},
		{in: "includeSubDomains", err: "max-age directive must be greater than 0"},
		{in: "max-age=0", err: "must be greater than 0"},
		{in: "max-age=31536000; preload", err: "requires includeSubDomains"},
		{in: "max-age=31535999; includeSubDomains; preload", err: "at least 31536000"},
	}
	for _, tt := range tests {
		got, err := nginxMustParseHSTS(tt.in)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err) || got != ""):
			t.Errorf("nginxMustParseHSTS(%q) = %q, %v; want an error containing %q", tt.in, got, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("nginxMustParseHSTS(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}
