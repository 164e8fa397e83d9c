// Package network gives embedded containers their own network: a Linux
// bridge on the host, and per container a named network namespace and a
// veth pair with an IP address from a persistent allocator (a JSON file
// under an flock, so no two containers share an address and allocations
// survive daemon restarts). It also publishes container ports on the host
// with a userland TCP proxy.
//
// Ownership: everything a Manager creates carries its owner's mark (see
// package owner): the bridge's ifalias ("berth <mark> <state dir>"), the
// netns names (berth-<mark>-<id[:12]>), the host veths' names
// (v<mark[:4]><id[:10]>, within IFNAMSIZ) and ifalias ("berth <mark>
// <id>"), and the iptables rule's comment ("berth <mark> bridge <name>").
// Cleanup removes only what carries the mark. New refuses, with
// owner.ErrInUse, a bridge marked by another daemon whose state dir still
// exists (and one whose state dir is gone while interfaces are still
// attached), an unmarked bridge in use that this state dir never used,
// and a subnet that overlaps an address of any other interface (which is
// how two daemons on one subnet are told apart), naming the interface and
// the other daemon's state dir. Bridge set-up runs under a host-wide
// flock, so two daemons starting at once are told apart too.
//
// Upgrade from an older berth, which marked nothing: the unmarked bridge
// of a state dir that has allocator state for it is marked and its old
// iptables rule replaced; the old netns and veth names of containers the
// state knows are still removed with them; unmarked leftovers the state
// does not know are left alone.
//
// A Manager is safe for concurrent use. Proxies own their listener and
// goroutines; Close stops them and returns after they have exited.
package network
