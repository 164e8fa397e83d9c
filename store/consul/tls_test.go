package consul_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/consul"
)

// pki is a throwaway CA and the PEM files it signed, for one test.
type pki struct {
	dir    string
	caKey  *ecdsa.PrivateKey
	caCert *x509.Certificate
	caFile string
	serial int64
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	p.caKey = newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &p.caKey.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	if p.caCert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	p.caFile = writePEM(t, p.dir, name+"-ca.pem", "CERTIFICATE", der)
	p.serial = 1
	return p
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue signs a certificate for 127.0.0.1 usable by servers and clients
// and returns its certificate and key files.
func (p *pki) issue(t *testing.T, name string) (certFile, keyFile string) {
	t.Helper()
	p.serial++
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, p.dir, name+".pem", "CERTIFICATE", der), writePEM(t, p.dir, name+"-key.pem", "EC PRIVATE KEY", kder)
}

func TestTLS(t *testing.T) {
	ca := newPKI(t, "berth-test")
	srvCert, srvKey := ca.issue(t, "server")
	cliCert, cliKey := ca.issue(t, "client")
	other := newPKI(t, "someone-else")
	strangerCert, strangerKey := other.issue(t, "stranger")

	agent := testenv.StartConsul(t, testenv.WithConsulHTTPS(ca.caFile, srvCert, srvKey))

	t.Run("CA and client certificate", func(t *testing.T) {
		s := open(t, consul.Config{Address: agent.HTTPSAddr, Scheme: "https", CAFile: ca.caFile, CertFile: cliCert, KeyFile: cliKey})
		if _, err := s.Put(t.Context(), "/tls/k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		if kv, err := s.Get(t.Context(), "/tls/k"); err != nil || string(kv.Value) != "v" {
			t.Fatalf("get over TLS: %+v, %v", kv, err)
		}
	})

	bad := []struct {
		name string
		cfg  consul.Config
		want string
	}{
		{
			name: "no client certificate",
			cfg:  consul.Config{Address: agent.HTTPSAddr, Scheme: "https", CAFile: ca.caFile},
			want: "TLS handshake failed",
		},
		{
			name: "client certificate from another CA",
			cfg:  consul.Config{Address: agent.HTTPSAddr, Scheme: "https", CAFile: ca.caFile, CertFile: strangerCert, KeyFile: strangerKey},
			want: "TLS handshake failed",
		},
		{
			name: "server not signed by the configured CA",
			cfg:  consul.Config{Address: agent.HTTPSAddr, Scheme: "https", CAFile: other.caFile, CertFile: cliCert, KeyFile: cliKey},
			want: "x509: certificate signed by unknown authority",
		},
		{
			name: "key does not match the certificate",
			cfg:  consul.Config{Address: agent.HTTPSAddr, Scheme: "https", CAFile: ca.caFile, CertFile: cliCert, KeyFile: strangerKey},
			want: "TLS: tls: private key does not match public key",
		},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := consul.New(t.Context(), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), agent.HTTPSAddr) {
				t.Fatalf("New: %v, want an error naming %s and containing %q", err, agent.HTTPSAddr, tt.want)
			}
			if errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("New: %v: a TLS misconfiguration is not an unavailable agent", err)
			}
			t.Log(err)
		})
	}
}
