package main

import (
	"os"

	"github.com/opencontainers/runc/libcontainer"

	// nsenter's cgo constructor joins/creates namespaces before the Go
	// runtime starts when the binary runs as a container init; without the
	// devices package the cgroup manager cannot set device rules.
	_ "github.com/opencontainers/cgroups/devices"
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// init turns this binary into a container's init process when the
// embedded runtime (libcontainer) re-executes it as "berth init". This is
// berth's one init function: libcontainer requires the dispatch to happen
// before anything else runs.
func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init() // never returns
	}
}
