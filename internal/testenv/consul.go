package testenv

import (
	"testing"

	"github.com/berthd/berth/internal/realparts"
)

// The Consul agent of internal/realparts.
type (
	Consul       = realparts.Consul
	ConsulOption = realparts.ConsulOption
)

// WithConsulACL enables ACLs with default policy deny and token as the
// initial management token (Consul.Token).
func WithConsulACL(token string) ConsulOption { return realparts.WithConsulACL(token) }

// WithConsulHTTPS also serves the HTTP API over TLS (Consul.HTTPSAddr)
// with the given PEM files, requiring client certificates signed by ca.
func WithConsulHTTPS(ca, cert, key string) ConsulOption {
	return realparts.WithConsulHTTPS(ca, cert, key)
}

// StartConsul starts a dev-mode agent for one test and stops it in
// t.Cleanup. A failure to start is fatal (CI always has Consul).
func StartConsul(t testing.TB, opts ...ConsulOption) *Consul {
	t.Helper()
	c, err := realparts.StartConsul(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

// ConsulCluster is a Consul server and client agents (not dev mode).
type ConsulCluster = realparts.ConsulCluster

// StartConsulCluster starts a server and n clients joined to it for one
// test and stops them in t.Cleanup.
func StartConsulCluster(t testing.TB, n int) *ConsulCluster {
	t.Helper()
	c, err := realparts.StartConsulCluster(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

// ConsulPair is realparts' server + client pair.
type ConsulPair = realparts.ConsulPair

// StartConsulPair starts a Consul server and a client agent joined to it,
// for one test, and stops them in t.Cleanup.
func StartConsulPair(t testing.TB) *ConsulPair {
	t.Helper()
	p, err := realparts.StartConsulPair()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}
