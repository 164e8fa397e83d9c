package certs

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// validName is a certificate file's base name the templates can write
// into a proxy's configuration: a host name's characters.
var validName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

// maxFile bounds what is read of one certificate or key file.
const maxFile = 1 << 20

// Load parses and checks the pair <name>.crt / <name>.key of dir at now:
// the name is one a configuration can carry, both files parse as PEM,
// the key matches the certificate's, and the leaf is valid at now. The
// error says what is wrong.
func Load(dir, name string, now time.Time) (Cert, error) {
	c := Cert{Name: name, CertFile: filepath.Join(dir, name+".crt"), KeyFile: filepath.Join(dir, name+".key")}
	if !validName.MatchString(name) {
		return c, fmt.Errorf("%s: the name %q is not a host name (letters, digits, _ . -)", c.CertFile, name)
	}
	certPEM, err := readSmall(c.CertFile)
	if err != nil {
		return c, err
	}
	keyPEM, err := readSmall(c.KeyFile)
	if err != nil {
		return c, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return c, fmt.Errorf("%s, %s: %w", c.CertFile, c.KeyFile, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return c, fmt.Errorf("%s: %w", c.CertFile, err)
	}
	switch {
	case now.After(leaf.NotAfter):
		return c, fmt.Errorf("%s: expired at %s", c.CertFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(leaf.NotBefore):
		return c, fmt.Errorf("%s: not valid before %s", c.CertFile, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	h := sha256.New()
	h.Write(certPEM)
	h.Write([]byte{0})
	h.Write(keyPEM)
	c.Subject, c.SANs, c.NotAfter = leaf.Subject.CommonName, leaf.DNSNames, leaf.NotAfter.UTC()
	c.Digest = hex.EncodeToString(h.Sum(nil))
	return c, nil
}

func readSmall(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if fi.Size() > maxFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxFile)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, errors.New(path + ": empty")
	}
	return b, nil
}

// PEM returns the certificate chain and the key of c, concatenated, as
// HAProxy takes them in one payload (set ssl cert). It reads the files
// again and checks that they still are the pair c describes.
func (c Cert) PEM() ([]byte, error) {
	certPEM, err := readSmall(c.CertFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := readSmall(c.KeyFile)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	h.Write(certPEM)
	h.Write([]byte{0})
	h.Write(keyPEM)
	if hex.EncodeToString(h.Sum(nil)) != c.Digest {
		return nil, fmt.Errorf("%s: changed since it was checked", c.CertFile)
	}
	out := append(append([]byte{}, certPEM...), '\n')
	return append(out, keyPEM...), nil
}
