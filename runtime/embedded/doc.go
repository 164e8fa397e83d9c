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
// (cgroups, mounts, netns, veths) that belong to no container. A container
// whose process ends while no berth daemon is its parent has an unknown
// exit status (recorded as 255 with an explanation), unless berth itself
// SIGKILLed it (137).
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
// behind (its error channel then reports ErrSlowConsumer), or on Close.
package embedded
