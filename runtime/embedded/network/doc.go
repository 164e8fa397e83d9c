// Package network gives embedded containers their own network: a Linux
// bridge on the host, and per container a named network namespace and a
// veth pair with an IP address from a persistent allocator (a JSON file
// under an flock, so no two containers share an address and allocations
// survive daemon restarts). It also publishes container ports on the host
// with a userland TCP proxy.
//
// A Manager is safe for concurrent use. Proxies own their listener and
// goroutines; Close stops them and returns after they have exited.
package network
