// Package embeddedtest holds what tests of the embedded runtime share:
// the libcontainer init dispatch for test binaries, test images built
// from Debian's busybox-static and from a static Go HTTP server compiled
// on the fly, a runtime on its own bridge, subnet and cgroup parent, and
// the check that nothing (mount, cgroup, netns, veth, bridge) is left.
package embeddedtest
