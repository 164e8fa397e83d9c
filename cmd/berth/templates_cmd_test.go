package main

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthd/berth/templates"
)

// TestTemplatesCommand: the shipped templates come out of the binary byte
// for byte, and save refuses to overwrite unless told.
func TestTemplatesCommand(t *testing.T) {
	ctx := context.Background()
	shipped, err := fs.ReadFile(templates.Files(), "nginx.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tests := []struct {
		name     string
		args     []string
		code     int
		stdoutIn string
		stderrIn string
	}{
		{"ls", []string{"templates", "ls"}, 0, "nginx.tmpl         builtin:nginx         berth's nginx reverse proxy, nginx-proxy style (native dialect)", ""},
		{"ls conf", []string{"templates", "ls"}, 0, "nginx.conf.tmpl    builtin:nginx.conf    A whole nginx.conf around nginx.tmpl (parse nginx.tmpl as an include), for an nginx that berth owns", ""},
		{"show short name", []string{"templates", "show", "nginx"}, 0, string(shipped), ""},
		{"show builtin name", []string{"templates", "show", "builtin:nginx"}, 0, string(shipped), ""},
		{"show unknown", []string{"templates", "show", "apache"}, 2, "", `no shipped template "apache" (berth ships: haproxy.cfg.tmpl, nginx-lua.tmpl, nginx.conf.tmpl, nginx.tmpl)`},
		{"save all", []string{"templates", "save", "--dir", dir}, 0, filepath.Join(dir, "nginx.conf.tmpl"), ""},
		{"save again refused", []string{"templates", "save", "--dir", dir, "nginx.tmpl"}, 1, "", "exists (--force overwrites it)"},
		{"save --force", []string{"templates", "save", "--force", "--dir", dir, "nginx.tmpl"}, 0, filepath.Join(dir, "nginx.tmpl"), ""},
		{"save without dir", []string{"templates", "save"}, 2, "", "--dir is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := berthCLIStdin(ctx, "", tc.args...)
			if code != tc.code || !strings.Contains(stdout, tc.stdoutIn) || !strings.Contains(stderr, tc.stderrIn) {
				t.Errorf("berth %s: exit %d stdout %q stderr %q; want exit %d, stdout containing %q, stderr containing %q",
					strings.Join(tc.args, " "), code, stdout, stderr, tc.code, tc.stdoutIn, tc.stderrIn)
			}
		})
	}
	saved, err := os.ReadFile(filepath.Join(dir, "nginx.tmpl"))
	if err != nil || string(saved) != string(shipped) {
		t.Errorf("saved nginx.tmpl differs from the shipped one (err %v)", err)
	}
}
