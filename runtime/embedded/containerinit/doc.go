// Package containerinit turns the binary that imports it into a
// container's init process when libcontainer re-executes it with the
// argument "init".
//
// It is a package of its own, not an init function in package main,
// because Go initialises package main last, after every package berth
// links (336 of them), while this package is initialised right after
// libcontainer and its dependencies (about 250 of them): the container's
// init skips the rest. Import it for its side effect, from a main package
// (or a test binary that starts containers) only.
package containerinit
