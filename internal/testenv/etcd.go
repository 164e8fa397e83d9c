package testenv

import (
	"testing"

	"github.com/berthd/berth/internal/realparts"
)

// The etcd processes of internal/realparts.
type (
	EtcdCluster = realparts.EtcdCluster
	EtcdMember  = realparts.EtcdMember
	EtcdOption  = realparts.EtcdOption
)

// WithEtcdClientTLS serves clients over TLS with the given server
// certificate, and requires client certificates signed by caFile.
func WithEtcdClientTLS(certFile, keyFile, caFile string) EtcdOption {
	return realparts.WithEtcdClientTLS(certFile, keyFile, caFile)
}

// StartEtcd starts an n-member cluster, waits until it has a leader, and
// stops it when the test ends.
func StartEtcd(t testing.TB, n int, opts ...EtcdOption) *EtcdCluster {
	t.Helper()
	c, err := realparts.StartEtcd(n, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}
