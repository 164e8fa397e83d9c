package config

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCertsLoad(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ toml, want string }{
		{"", "/state/certs"}, // the default
		{"[certs]\ndir = \"tls\"\n", filepath.Join(dir, "tls")}, // relative to the file
		{"[certs]\ndir = \"/etc/berth/certs\"\n", "/etc/berth/certs"},
	} {
		file := filepath.Join(dir, "berth.toml")
		if err := os.WriteFile(file, []byte(tc.toml), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := Load(file)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.Certs.DirFor("/state"); got != tc.want {
			t.Errorf("%q: certificate directory %q, want %q", tc.toml, got, tc.want)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "berth.toml"), []byte("[certs]\ndri = \"x\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(filepath.Join(dir, "berth.toml")); err == nil {
		t.Error("an unknown [certs] key loads")
	}
}
