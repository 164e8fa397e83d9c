package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a throwaway certificate authority that issues host certificates
// into a certificate directory (<name>.crt and <name>.key, as berth's
// certificate store and nginx-proxy read them).
type CA struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
	Pool *x509.CertPool // trusts the CA
}

// NewCA makes a CA.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key, cert, _ := newCA(t, "berth test CA")
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{key: key, cert: cert, Pool: pool}
}

// Issue writes dir/<name>.crt (the leaf, then the CA) and dir/<name>.key
// (mode 0600) for subject (the common name) and dnsNames, valid until
// notAfter (and from an hour before now, or from notAfter minus a day if
// that is earlier: an expired certificate), each replaced atomically.
func (ca *CA) Issue(t testing.TB, dir, name, subject string, notAfter time.Time, dnsNames ...string) {
	t.Helper()
	certPEM, keyPEM := ca.Pair(t, subject, notAfter, dnsNames...)
	WriteAtomic(t, filepath.Join(dir, name+".key"), keyPEM)
	WriteAtomic(t, filepath.Join(dir, name+".crt"), certPEM)
}

// Pair returns a certificate chain and its key, PEM.
func (ca *CA) Pair(t testing.TB, subject string, notAfter time.Time, dnsNames ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	notBefore := time.Now().Add(-time.Hour)
	if nb := notAfter.Add(-24 * time.Hour); nb.Before(notBefore) {
		notBefore = nb
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: subject},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     dnsNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})...)
	return certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// WriteAtomic replaces path with b (mode 0600) through a rename.
func WriteAtomic(t testing.TB, path string, b []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
