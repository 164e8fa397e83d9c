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
// The binary (or test binary) must dispatch to libcontainer.Init when
// started with the argument "init", and link the nsenter and cgroup
// devices packages; see cmd/berth/container_init.go.
//
// Concurrency: a Runtime is safe for concurrent use. Events channels are
// closed by the Runtime when the subscriber's context ends, when it falls
// behind (its error channel then reports ErrSlowConsumer), or on Close.
package embedded
