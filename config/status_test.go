package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStatusRead(t *testing.T) {
	dir := t.TempDir()
	tok, pass, empty := filepath.Join(dir, "tok"), filepath.Join(dir, "pass"), filepath.Join(dir, "empty")
	for p, v := range map[string]string{tok: "t0ken\n", pass: " pw \n", empty: "\n"} {
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		in      Status
		want    StatusCredentials
		wantErr string
	}{
		{Status{}, StatusCredentials{}, ""},
		{Status{TokenFile: tok}, StatusCredentials{Token: "t0ken"}, ""},
		{Status{User: "ops", PasswordFile: pass}, StatusCredentials{User: "ops", Password: "pw"}, ""},
		{Status{TokenFile: empty}, StatusCredentials{}, "token_file: " + empty + " is empty"},
		{Status{TokenFile: filepath.Join(dir, "missing")}, StatusCredentials{}, "token_file: open"},
		{Status{User: "ops"}, StatusCredentials{}, "user is set but password_file is not"},
		{Status{PasswordFile: pass}, StatusCredentials{}, "password_file is set but user is not"},
		{Status{User: "a:b", PasswordFile: pass}, StatusCredentials{}, "no ':'"},
	} {
		got, err := tc.in.Read()
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%+v: error %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%+v: %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestStatusLoad(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "berth.toml")
	if err := os.WriteFile(file, []byte("[daemon]\nlisten = \"0.0.0.0:9180\"\n\n[daemon.status]\ntoken_file = \"status.token\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "status.token"); f.Daemon.Status.TokenFile != want {
		t.Errorf("token_file %q, want %q (relative to the file)", f.Daemon.Status.TokenFile, want)
	}
}
