// Package testenv gives tests the real external parts they run against
// (etcd processes, a Consul agent, nginx, Docker images and networks, a
// throwaway CA): thin testing.TB wrappers over internal/realparts that
// stop what they started in t.Cleanup.
package testenv
