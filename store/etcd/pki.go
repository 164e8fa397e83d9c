package etcd

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// The embedded store's credentials live in Dir/tls (mode 0700, or 0750 for
// EmbeddedConfig.Group): a CA, the
// server's certificate (also its peer certificate) and one client
// certificate, shared by every berth process that may use the store. The
// server accepts only clients that present a certificate signed by the CA,
// so reading Dir/tls/client.key is what it takes to read or write the
// routing table. The CA's key stays there for the cluster join to come (a
// new member gets a peer certificate from it).
const (
	tlsDirName = "tls"
	caCertName = "ca.crt"
	caKeyName  = "ca.key"
	srvCert    = "server.crt"
	srvKey     = "server.key"
	cliCert    = "client.crt"
	cliKey     = "client.key"
)

const (
	// certValidity is how long generated certificates are valid. A
	// certificate that would expire within certRenewBefore is replaced
	// when the server starts (the CA only when it is replaced itself).
	certValidity    = 10 * 365 * 24 * time.Hour
	certRenewBefore = 30 * 24 * time.Hour
)

// credentials are the paths of an embedded store's TLS files.
type credentials struct {
	dir               string
	ca, caKey         string
	server, serverKey string
	client, clientKey string
}

func credentialsIn(storeDir string) credentials {
	d := filepath.Join(storeDir, tlsDirName)
	return credentials{
		dir: d,
		ca:  filepath.Join(d, caCertName), caKey: filepath.Join(d, caKeyName),
		server: filepath.Join(d, srvCert), serverKey: filepath.Join(d, srvKey),
		client: filepath.Join(d, cliCert), clientKey: filepath.Join(d, cliKey),
	}
}

// share sets the modes of the store's directory and of the files a client
// reads: private to the owner, or (gid >= 0) readable by group gid too.
func (c credentials) share(storeDir string, gid int) error {
	dirMode, fileMode := os.FileMode(0o700), os.FileMode(0o600)
	if gid >= 0 {
		dirMode, fileMode = 0o750, 0o640
	}
	paths := []struct {
		path string
		mode os.FileMode
	}{
		{storeDir, dirMode}, {c.dir, dirMode},
		{c.ca, fileMode}, {c.client, fileMode}, {c.clientKey, fileMode},
		{filepath.Join(storeDir, endpointFile), fileMode}, {filepath.Join(storeDir, lockFile), fileMode},
	}
	for _, p := range paths {
		if gid >= 0 {
			if err := os.Chown(p.path, -1, gid); errors.Is(err, fs.ErrNotExist) {
				continue // not written yet
			} else if err != nil {
				return err
			}
		}
		if err := os.Chmod(p.path, p.mode); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// clientFiles are the files a client reads, in the order it reads them.
func (c credentials) clientFiles() []string { return []string{c.ca, c.client, c.clientKey} }

// ensure makes sure the CA, the server and the client certificates exist
// and are valid, generating what is missing, unreadable, mismatched or
// about to expire. Only the process that serves the directory calls it.
func (c credentials) ensure(now time.Time, extraIPs ...net.IP) error {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return err
	}
	ca, caKey, err := loadPair(c.ca, c.caKey)
	if err != nil || !ca.IsCA || now.Add(certRenewBefore).After(ca.NotAfter) {
		ca, caKey, err = newCA(now)
		if err != nil {
			return err
		}
		if err := writePair(c.ca, c.caKey, ca, caKey); err != nil {
			return err
		}
	}
	leaves := []struct {
		cert, key string
		tmpl      *x509.Certificate
	}{
		{c.server, c.serverKey, &x509.Certificate{
			Subject:     pkix.Name{CommonName: "berth embedded store"},
			DNSNames:    []string{"localhost"},
			IPAddresses: append([]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, extraIPs...),
			// Client auth too: etcd's gRPC gateway, and peers, present the
			// server certificate as their client certificate.
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}},
		{c.client, c.clientKey, &x509.Certificate{
			Subject:     pkix.Name{CommonName: "berth client"},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}},
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	for _, l := range leaves {
		if validLeaf(l.cert, l.key, pool, l.tmpl.ExtKeyUsage[0], now, l.tmpl.IPAddresses) {
			continue
		}
		cert, key, err := newLeaf(l.tmpl, ca, caKey, now)
		if err != nil {
			return err
		}
		if err := writePair(l.cert, l.key, cert, key); err != nil {
			return err
		}
	}
	return nil
}

// validLeaf reports whether the certificate and key at certPath and keyPath
// match, chain to the CA in pool for usage, stay valid long enough and
// cover ips.
func validLeaf(certPath, keyPath string, pool *x509.CertPool, usage x509.ExtKeyUsage, now time.Time, ips []net.IP) bool {
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return false
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil || now.Add(certRenewBefore).After(cert.NotAfter) {
		return false
	}
	for _, ip := range ips {
		if cert.VerifyHostname(ip.String()) != nil {
			return false // an address was added (a store that became a cluster member)
		}
	}
	_, err = cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}})
	return err == nil
}

// loadPair reads a certificate and its ECDSA key.
func loadPair(certPath, keyPath string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, nil, err
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, errors.New("not an ECDSA key")
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func newCA(now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "berth store CA"},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	cert, err := sign(tmpl, tmpl, &key.PublicKey, key, now)
	return cert, key, err
}

func newLeaf(tmpl, ca *x509.Certificate, caKey *ecdsa.PrivateKey, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	t := *tmpl
	t.KeyUsage = x509.KeyUsageDigitalSignature
	cert, err := sign(&t, ca, &key.PublicKey, caKey, now)
	return cert, key, err
}

func sign(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey, now time.Time) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-time.Hour) // tolerate a little clock skew
	tmpl.NotAfter = now.Add(certValidity)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("create certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	return x509.ParseCertificate(der)
}

// writePair writes a key and then its certificate, each atomically and
// private (share opens the client's to the store's group). A crash between
// the two leaves a mismatched pair, which the next start replaces.
func writePair(certPath, keyPath string, cert *x509.Certificate, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600)
}
