package main

import (
	"path/filepath"
	"testing"

	"github.com/berthd/berth/config"
)

// The templates read the directory ACME writes: [certs] dir, else an
// [acme] certs_dir, else <state_dir>/certs (where ACME writes by default).
func TestCertDirFollowsACME(t *testing.T) {
	state := t.TempDir()
	on := config.ACME{DirectoryURL: "https://ca.example/dir"}
	cases := []struct {
		name string
		file config.File
		want string
	}{
		{"default", config.File{}, filepath.Join(state, "certs")},
		{"acme default", config.File{ACME: on}, filepath.Join(state, "certs")},
		{"acme certs_dir", config.File{ACME: config.ACME{DirectoryURL: on.DirectoryURL, CertsDir: "/srv/acme-certs"}}, "/srv/acme-certs"},
		{"acme off", config.File{ACME: config.ACME{CertsDir: "/srv/acme-certs"}}, filepath.Join(state, "certs")},
		{"[certs] dir wins", config.File{Certs: config.Certs{Dir: "/etc/nginx/certs"}, ACME: config.ACME{DirectoryURL: on.DirectoryURL, CertsDir: "/srv/acme-certs"}}, "/etc/nginx/certs"},
	}
	for _, tc := range cases {
		if got := certDir(state, []*config.File{&tc.file}); got != tc.want {
			t.Errorf("%s: certDir = %q, want %q", tc.name, got, tc.want)
		}
	}
}
