package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Status is the [daemon.status] table: who may read the status page and
// its JSON API on the daemon's listener ([daemon] listen). Secrets are
// read from files (mode 0600 advised), never written in berth.toml:
//
//	[daemon.status]
//	token_file = "/etc/berth/status.token"     # Authorization: Bearer TOKEN (or basic auth, any user, TOKEN as password)
//	user = "ops"                                # basic auth, with
//	password_file = "/etc/berth/status.pass"   # its password
//
// With neither, the page is served on a loopback listener only; on any
// other address it answers 403 until one is set. /metrics and /healthz
// are not affected.
type Status struct {
	TokenFile    string `toml:"token_file"`
	User         string `toml:"user"`
	PasswordFile string `toml:"password_file"`
}

// resolve makes the file paths relative to dir (the configuration's).
func (s Status) resolve(dir string) Status {
	s.TokenFile, s.PasswordFile = relTo(dir, s.TokenFile), relTo(dir, s.PasswordFile)
	return s
}

// StatusCredentials are the secrets a Status names, read.
type StatusCredentials struct {
	User, Password, Token string
}

// Read reads the files s names. A file that cannot be read or is empty
// is an error naming the key and the file; so is a user without a
// password file, or a password file without a user.
func (s Status) Read() (StatusCredentials, error) {
	var c StatusCredentials
	read := func(key, path string) (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("[daemon.status] %s: %w", key, err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("[daemon.status] %s: %s is empty", key, path)
		}
		return v, nil
	}
	var err error
	if s.TokenFile != "" {
		if c.Token, err = read("token_file", s.TokenFile); err != nil {
			return c, err
		}
	}
	switch {
	case s.User != "" && s.PasswordFile == "":
		return c, errors.New("[daemon.status] user is set but password_file is not")
	case s.User == "" && s.PasswordFile != "":
		return c, errors.New("[daemon.status] password_file is set but user is not")
	case s.User != "":
		if strings.ContainsAny(s.User, ":\r\n") {
			return c, fmt.Errorf("[daemon.status] user %q: no ':' or line breaks", s.User)
		}
		c.User = s.User
		if c.Password, err = read("password_file", s.PasswordFile); err != nil {
			return c, err
		}
	}
	return c, nil
}
