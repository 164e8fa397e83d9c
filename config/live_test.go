package config

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadLive(t *testing.T) {
	cases := []struct {
		name, keys string
		wantLive   string
		wantDir    string // "" with an error
		err        string
	}{
		{name: "off", keys: ``},
		{name: "default dir", keys: `live = "nginx-lua"`, wantLive: "nginx-lua", wantDir: "/run/berth/live/my_nginx"},
		{name: "own dir", keys: "live = \"nginx-lua\"\nlive_dir = \"/run/x/live/\"", wantLive: "nginx-lua", wantDir: "/run/x/live"},
		{name: "relative dir", keys: "live = \"nginx-lua\"\nlive_dir = \"state/live\"", wantLive: "nginx-lua", wantDir: "DIR/state/live"},
		{name: "unknown kind", keys: `live = "varnish"`, err: `live "varnish": want one of ["nginx-lua" "haproxy"]`},
		{name: "dir without live", keys: `live_dir = "/run/x"`, err: "live_dir is set but live is not"},
		{name: "unsafe dir", keys: "live = \"nginx-lua\"\nlive_dir = \"/run/a b\"", err: `live_dir "/run/a b": want an absolute path`},
		{name: "quote in dir", keys: "live = \"nginx-lua\"\nlive_dir = '/run/a\"); os.execute(\"x'", err: "want an absolute path"},
		{name: "long dir", keys: "live = \"nginx-lua\"\nlive_dir = \"/" + strings.Repeat("d", 100) + "\"", err: "longer than 92 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			file := write(t, dir, "berth.toml", "[[template]]\nname = \"my nginx\"\nsrc = \"a.tmpl\"\ndest = \"/tmp/a.conf\"\n"+tc.keys+"\n")
			f, err := Load(file)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "berth.toml") {
					t.Fatalf("error %v, want one naming the file and %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := f.Templates[0]
			want := strings.Replace(tc.wantDir, "DIR", dir, 1)
			if got.Live != tc.wantLive || got.LiveDir != filepath.Clean(want) && want != "" || want == "" && got.LiveDir != "" {
				t.Errorf("live %q dir %q, want %q %q", got.Live, got.LiveDir, tc.wantLive, want)
			}
		})
	}
}

func TestValidateLiveDirOnce(t *testing.T) {
	dir := t.TempDir()
	file := write(t, dir, "berth.toml", `
[[template]]
src = "a.tmpl"
dest = "/tmp/a.conf"
live = "nginx-lua"
live_dir = "/run/berth/live/x"

[[template]]
src = "b.tmpl"
dest = "/tmp/b.conf"
live = "nginx-lua"
live_dir = "/run/berth/live/x"
`)
	if _, err := Load(file); err == nil || !strings.Contains(err.Error(), "live_dir /run/berth/live/x is also template") {
		t.Fatalf("two templates on one live_dir: %v", err)
	}
}
