// Package owner ties the host resources a berth daemon creates to its
// state dir, so that a daemon touches only what it owns.
//
// At its first start a daemon writes a random instance id into its state
// dir (owner.json). Its ownership mark is a short hash of the state dir's
// absolute path and that id: eight hex digits, the same across restarts,
// different for another state dir, for a copy of this one, and for a state
// dir removed and created again at the same path. Every resource the
// daemon creates carries the mark: cgroup paths, netns and veth names,
// the bridge's and the veths' ifalias (Tag), iptables rule comments.
//
// Claim also takes the state dir's lock (runtime.lock, an flock held for
// the daemon's life and naming its pid), so a second daemon on the same
// state dir is refused. Describe tells another daemon's state from its
// state dir, for messages.
package owner
