// Package testenv starts the real external parts berth's integration tests
// run against (a Consul agent, etcd processes), on loopback ports, and stops
// exactly the processes it started.
package testenv
