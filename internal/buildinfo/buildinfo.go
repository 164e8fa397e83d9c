// Package buildinfo reports what a berth binary was built from.
package buildinfo

import "runtime/debug"

// Version is the binary's version: stamped (set at link time with
// -ldflags "-X main.version=..."; "" when not), else the module version
// Go derived from the VCS at build time, else "devel".
func Version(stamped string) string {
	if stamped != "" {
		return stamped
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}
