// Package containerinit turns the binary that imports it into a
// container's init process when libcontainer re-executes it with the
// argument "init".
//
// First, before libcontainer's nsexec constructor and before the Go
// runtime, a C constructor looks for a sealed memfd named "berth-init"
// among the descriptors of its parent (the daemon; embedded.New creates
// it from the berth-init companion) and, when there is one, re-executes
// the init from it, with the same arguments, environment and descriptors.
// The companion (cmd/berth-init) imports only this package, so it
// initialises about 80 packages instead of berth's 340. The memfd is
// sealed against writes, so a container cannot change the binary through
// /proc/<pid>/exe (CVE-2019-5736), as with libcontainer's own sealed copy.
//
// It is a package of its own, not an init function in package main,
// because Go initialises package main last, after every package berth
// links (336 of them), while this package is initialised right after
// libcontainer and its dependencies (about 250 of them): the container's
// init skips the rest. Import it for its side effect, from a main package
// (or a test binary that starts containers) only.
package containerinit
