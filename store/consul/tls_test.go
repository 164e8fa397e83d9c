package consul_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/berthd/berth/internal/testenv"
	"github.com/berthd/berth/store"
	"github.com/berthd/berth/store/consul"
)

func TestTLS(t *testing.T) {
	t.Parallel()
	certs := testenv.GenerateCerts(t)
	agent := testenv.StartConsul(t, testenv.WithConsulHTTPS(certs.CA, certs.ServerCert, certs.ServerKey))

	t.Run("CA and client certificate", func(t *testing.T) {
		s := open(t, consul.Config{Address: agent.HTTPSAddr, Scheme: "https", CAFile: certs.CA, CertFile: certs.ClientCert, KeyFile: certs.ClientKey})
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
			cfg:  consul.Config{Address: agent.HTTPSAddr, Scheme: "https", CAFile: certs.CA},
			want: "TLS handshake failed",
		},
		{
			name: "server not signed by the configured CA",
			cfg:  consul.Config{Address: agent.HTTPSAddr, Scheme: "https", CAFile: certs.OtherCA, CertFile: certs.ClientCert, KeyFile: certs.ClientKey},
			want: "x509: certificate signed by unknown authority",
		},
		{
			name: "key does not match the certificate",
			cfg:  consul.Config{Address: agent.HTTPSAddr, Scheme: "https", CAFile: certs.CA, CertFile: certs.ClientCert, KeyFile: certs.ServerKey},
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
