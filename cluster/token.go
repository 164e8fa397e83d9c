package cluster

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// tokenFile holds the cluster's join secret, in the store's tls directory.
const tokenFile = "tls/join-secret"

// tokenVersion prefixes every token.
const tokenVersion = "berth1"

// ErrBadToken reports a join token that is not one, or that the cluster
// refuses.
var ErrBadToken = errors.New("bad join token")

// Token is a parsed join token.
type Token struct {
	Pin    string // hex SHA-256 of the cluster CA certificate
	Secret string // hex, 32 bytes
}

// String is the token as berth cluster token prints it.
func (t Token) String() string { return tokenVersion + "." + t.Pin + "." + t.Secret }

// ParseToken parses "berth1.<pin>.<secret>".
func ParseToken(s string) (Token, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 3 || parts[0] != tokenVersion {
		return Token{}, fmt.Errorf("%w: want %s.<CA pin>.<secret> (berth cluster token prints it on a member)", ErrBadToken, tokenVersion)
	}
	for _, p := range []struct {
		what, v string
		n       int
	}{{"CA pin", parts[1], 32}, {"secret", parts[2], 32}} {
		if b, err := hex.DecodeString(p.v); err != nil || len(b) != p.n {
			return Token{}, fmt.Errorf("%w: the %s is not %d hex bytes", ErrBadToken, p.what, p.n)
		}
	}
	return Token{Pin: strings.ToLower(parts[1]), Secret: strings.ToLower(parts[2])}, nil
}

// secretIn reads the join secret kept in storeDir; create makes one if
// there is none.
func secretIn(storeDir string, create bool) (string, error) {
	path := filepath.Join(storeDir, tokenFile)
	b, err := os.ReadFile(path)
	if err == nil {
		s := strings.TrimSpace(string(b))
		if raw, err := hex.DecodeString(s); err != nil || len(raw) != 32 {
			return "", fmt.Errorf("%s: not a join secret: remove it to make a new one (the old token stops working)", path)
		}
		return s, nil
	}
	if !errors.Is(err, fs.ErrNotExist) || !create {
		return "", err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	s := hex.EncodeToString(raw)
	return s, writeSecret(storeDir, s)
}

func writeSecret(storeDir, secret string) error {
	path := filepath.Join(storeDir, tokenFile)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(secret+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// sameSecret compares secrets in constant time.
func sameSecret(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }
