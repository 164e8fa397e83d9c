package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadACME(t *testing.T) {
	dir := t.TempDir()
	file := write(t, dir, "berth.toml", `
[acme]
directory_url = "https://127.0.0.1:14000/dir"
email = "ops@example.com"
certs_dir = "certs"
ca_file = "pebble.minica.pem"
renew_before = "20d"
retry_min = "30s"
`)
	f, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	a := f.ACME
	if a.DirectoryURL != "https://127.0.0.1:14000/dir" || a.Email != "ops@example.com" ||
		a.CertsDir != filepath.Join(dir, "certs") || a.CAFile != filepath.Join(dir, "pebble.minica.pem") || a.Storage != "" {
		t.Errorf("%+v", a)
	}
	d, err := a.Durations()
	if err != nil || d.RenewBefore != 20*24*time.Hour || d.RetryMin != 30*time.Second || d.RetryMax != 0 {
		t.Errorf("%+v %v", d, err)
	}
}

func TestLoadACMEErrors(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`directory_url = "ftp://x/dir"`, "directory_url"},
		{`directory_url = "https://x/dir"` + "\n" + `renew_before = "soon"`, "renew_before"},
		{`directory_url = "https://x/dir"` + "\n" + `email = "a b@c"`, "email"},
		{`directory_url = "https://x/dir"` + "\n" + `challenge_listen = "8402"`, "challenge_listen"},
		{`directory = "https://x/dir"`, "directory"}, // unknown key
	} {
		file := write(t, t.TempDir(), "berth.toml", "[acme]\n"+tc.body+"\n")
		if _, err := Load(file); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error naming %s", tc.body, err, tc.want)
		}
	}
}
