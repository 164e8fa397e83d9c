// Package realparts starts the real external parts berth's integration
// tests and benchmarks run against — etcd processes (Debian's etcd-server),
// a Consul dev agent, nginx — on loopback ports, and stops exactly the
// processes it started. It does not import testing, so the berth binary
// (berth bench) can use it; internal/testenv wraps it for tests.
//
// Every Start returns a value whose Stop the caller must call; children are
// also killed if the process dies without cleaning up (Pdeathsig).
package realparts
