package templates_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/berthd/berth/templates"
)

func TestBuiltin(t *testing.T) {
	if got, want := templates.Names(), []string{"builtin:haproxy.cfg", "builtin:nginx", "builtin:nginx-lua", "builtin:nginx.conf"}; !slices.Equal(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
	tests := []struct {
		path, canonical, err string
		ok                   bool
	}{
		{"builtin:nginx", "builtin:nginx.tmpl", "", true},
		{"builtin:nginx.tmpl", "builtin:nginx.tmpl", "", true},
		{"builtin:nginx.conf", "builtin:nginx.conf.tmpl", "", true},
		{"builtin:apache", "", `unknown builtin template "builtin:apache": berth ships builtin:haproxy.cfg, builtin:nginx, builtin:nginx-lua, builtin:nginx.conf`, true},
		{"builtin:", "", "unknown builtin template", true},
		{"builtin:../templates/nginx.tmpl", "", "unknown builtin template", true},
		{"nginx.tmpl", "", "", false},
		{"/etc/berth/builtin:nginx", "", "", false},
	}
	for _, tc := range tests {
		canonical, text, ok, err := templates.Builtin(tc.path)
		if ok != tc.ok || canonical != tc.canonical || (tc.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("Builtin(%q) = %q, %v, %v; want %q, %v, error %q", tc.path, canonical, ok, err, tc.canonical, tc.ok, tc.err)
		}
		if tc.canonical != "" && !strings.Contains(string(text), "{{") {
			t.Errorf("Builtin(%q): text %q", tc.path, text)
		}
	}
}
