// Package embedded is berth's own container runtime: real Linux containers
// (namespaces, cgroups through the cgroupfs driver, Docker's default
// capabilities, no_new_privs, a default seccomp profile, masked /proc
// paths) run with runc's libcontainer inside the berth binary, on an
// overlay of image layers (package image), attached to a bridge (package
// network).
//
// State lives under one directory; containers keep running when the
// process that started them exits, and New re-attaches to them, reaps
// them, resumes health checks and restart policies, and removes orphans
// (cgroups, mounts, netns, veths) that belong to no container.
//
// A daemon touches only what it owns. New claims the state dir (an flock
// on runtime.lock, so a second daemon on it is refused, naming the first
// one's pid) and derives the ownership mark from it (package owner). Every
// container cgroup goes under /<cgroup parent>/<mark>/<id>, so daemons
// sharing a parent (the default "berth") each have a root of their own;
// netns, veths, the bridge and its iptables rule carry the mark too
// (package network). Orphans are looked for only among resources carrying
// this daemon's mark, and removed with a log line; other daemons'
// resources are left alone and logged at debug level. New refuses a bridge
// another daemon owns and a subnet overlapping an address of any other
// interface (so also another daemon's subnet), with owner.ErrInUse.
//
// Upgrade: state written by an older berth, which marked nothing, keeps
// working. Its records hold no cgroup path, and the cgroup of a running
// container is found at the old /<parent>/<id>; the next start of such a
// container moves it under the mark. Its bridge is marked at the first
// start (this state dir's allocator state shows it used it), its iptables
// rule replaced, and its containers' old netns and veth names are still
// removed with them. Unmarked leftovers the state does not know (an older
// daemon's orphans, or another daemon's) are left alone: nothing tells
// whose they are.
//
// Exit status after a daemon restart: only a process's parent (or a
// subreaper among its ancestors) learns how it ended. A container's init
// is the daemon's child; once the daemon is gone it is reparented to the
// host's init, which reaps it and drops the status, and a restarted daemon
// that re-attaches is not its parent either (it sees the exit through a
// pidfd, without status). Such an exit is recorded as 255 with an
// explanation in Error, except where the status can be told: 137 when
// berth itself SIGKILLed the process, and 137 with OOMKilled when the
// kernel's OOM killer acted in the container's memory cgroup (the cgroup
// outlives the process until berth removes it). The full fix is a process
// that outlives the daemon and is the containers' parent or subreaper
// ancestor: a shim per container (containerd-shim, conmon), or a small
// supervisor that runs the daemon as its child with
// PR_SET_CHILD_SUBREAPER and records the statuses of the orphans it reaps
// in the state dir. Either belongs where the daemon is started (berth up)
// and costs a process; it is not done.
//
// Published ports (-p) are served by a userland TCP proxy in the daemon:
// they stop while the daemon is down and come back when a daemon
// re-attaches to the container. This is deliberate. Docker's alternative,
// iptables DNAT, keeps them up but changes host-wide state berth otherwise
// leaves alone (net.ipv4.ip_forward, route_localnet for 127.0.0.1, nat
// rules in PREROUTING and OUTPUT, a MASQUERADE rule for hairpin traffic),
// and berth's own routing, nginx on the host proxying to container
// addresses on the bridge, does not go through published ports at all.
//
// Output goes to files the container writes directly (so it survives the
// daemon); a tailer copies it line by line, timestamped when read, into a
// log rotated at 16 MiB.
//
// The binary (or test binary) must import package containerinit, which
// dispatches to libcontainer.Init when libcontainer re-executes it.
// libcontainer always re-executes the running binary as a container's
// init, and for berth that means initialising every package berth links
// (etcd, gRPC, Consul's API, ...) on every start, which cost more than
// runc's whole start. So New loads a small companion, berth-init (package
// containerinit and libcontainer only; see WithInitBinary), into a sealed
// memfd, and containerinit's C constructor, which runs before
// libcontainer's nsexec and before the Go runtime, re-executes the
// container's init from that memfd. Without a usable companion (none next
// to the binary, or built from other versions) containers start by
// re-executing the binary itself, as before, only slower.
//
// Concurrency: a Runtime is safe for concurrent use. Events channels are
// closed by the Runtime when the subscriber's context ends, when it falls
// behind (its error channel then reports runtime.ErrSlowConsumer), or on Close.
package embedded
