package acme

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-acme/lego/v5/acme"

	"github.com/berthd/berth/internal/atomicfile"
)

// storage is the local storage directory: one JSON file per account
// (accounts/<email>.json, with its private key), one per certificate
// (certs/<host>.json, with its key), and budget.json. Every file is
// replaced atomically (temporary file, fsync, rename, directory fsync) with
// mode 0600, so a process killed at any point leaves each file whole, old
// or new. Temporary files a kill left behind are removed at open.
type storage struct {
	dir string
}

func openStorage(dir string) (*storage, error) {
	for _, sub := range []string{"", "accounts", "certs"} {
		d := filepath.Join(dir, sub)
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("acme storage: %w", err)
		}
		// atomicfile's temporary files are hidden: ".name.*".
		ents, err := os.ReadDir(d)
		if err != nil {
			return nil, fmt.Errorf("acme storage: %w", err)
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".") && !e.IsDir() {
				_ = os.Remove(filepath.Join(d, e.Name()))
			}
		}
	}
	return &storage{dir: dir}, nil
}

// writeFile replaces name atomically, unless it holds data already, and
// makes the rename durable.
func writeFile(name string, data []byte, mode os.FileMode) error {
	if err := atomicfile.WriteIfChanged(name, data, mode); err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(name))
}

func (s *storage) writeJSON(rel string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(s.dir, rel), append(b, '\n'), 0o600)
}

// readJSON reads rel into v; a missing file is fs.ErrNotExist.
func (s *storage) readJSON(rel string, v any) error {
	b, err := os.ReadFile(filepath.Join(s.dir, rel))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("acme storage %s: %w", filepath.Join(s.dir, rel), err)
	}
	return nil
}

// account is one ACME account, stored with its key.
type account struct {
	Email        string                `json:"email"`
	KeyPEM       string                `json:"key"`
	Registration *acme.ExtendedAccount `json:"registration,omitempty"`

	key crypto.Signer
}

func (a *account) GetEmail() string                       { return a.Email }
func (a *account) GetRegistration() *acme.ExtendedAccount { return a.Registration }
func (a *account) GetPrivateKey() crypto.Signer           { return a.key }

func accountFile(email string) string {
	name := email
	if name == "" {
		name = "default"
	}
	return filepath.Join("accounts", fileSafe(name)+".json")
}

// fileSafe keeps letters, digits, '.', '-', '_' and '@'; anything else
// becomes '_'.
func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-_@", r) {
			return r
		}
		return '_'
	}, s)
}

// loadAccount reads the account of email, creating (and storing) its key
// when there is none yet. Its registration is stored once the CA has it.
func (s *storage) loadAccount(email string) (*account, error) {
	a := &account{}
	err := s.readJSON(accountFile(email), a)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, err
		}
		a = &account{Email: email, KeyPEM: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), key: k}
		return a, s.saveAccount(a)
	case err != nil:
		return nil, err
	}
	k, err := parseKey([]byte(a.KeyPEM))
	if err != nil {
		return nil, fmt.Errorf("acme storage %s: %w", accountFile(email), err)
	}
	a.key = k
	return a, nil
}

func (s *storage) saveAccount(a *account) error { return s.writeJSON(accountFile(a.Email), a) }

func parseKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM key")
	}
	if k, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
	}
	if k, err := x509.ParseECPrivateKey(blk.Bytes); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
		return k, nil
	}
	return nil, errors.New("unsupported private key")
}

// Cert is one issued certificate: what the store holds under
// <prefix>/acme/certs/<host> for each of its names, and what the local
// storage keeps.
type Cert struct {
	Names    []string  `json:"names"`     // the name set it was ordered for; Names[0] is its main name
	CertPEM  string    `json:"cert"`      // leaf first, then the chain
	KeyPEM   string    `json:"key"`       // its private key
	NotAfter time.Time `json:"not_after"` // the leaf's
	Issued   time.Time `json:"issued"`
}

// parseCert checks that c's leaf parses, matches its key and covers
// names, and returns the leaf.
func (c Cert) leaf() (*x509.Certificate, error) {
	blk, _ := pem.Decode([]byte(c.CertPEM))
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, err
	}
	k, err := parseKey([]byte(c.KeyPEM))
	if err != nil {
		return nil, err
	}
	pub, ok := k.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return nil, errors.New("the key does not match the certificate")
	}
	for _, n := range c.Names {
		if err := leaf.VerifyHostname(n); err != nil {
			return nil, err
		}
	}
	return leaf, nil
}

func certFile(main string) string { return filepath.Join("certs", fileSafe(main)+".json") }

func (s *storage) loadCert(main string) (Cert, error) {
	var c Cert
	err := s.readJSON(certFile(main), &c)
	return c, err
}

func (s *storage) saveCert(c Cert) error { return s.writeJSON(certFile(c.Names[0]), c) }
