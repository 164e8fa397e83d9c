// Package containerinit turns the binary that imports it into a
// container's init process when libcontainer re-executes it with the
// argument "init".
//
// It exists as its own small package, instead of an init function in
// package main, for speed: Go runs package main's init functions after
// those of every other package (336 of them in berth, ~20-35 ms), while a
// package whose only dependencies are libcontainer's is initialised as
// soon as those are, so the container starts without paying for etcd,
// gRPC and the rest. Import it for its side effect, from main only.
package containerinit

import (
	"os"

	"github.com/opencontainers/runc/libcontainer"

	// nsenter's cgo constructor joins and creates namespaces before the Go
	// runtime starts; without the devices package the cgroup manager
	// cannot set device rules.
	_ "github.com/opencontainers/cgroups/devices"
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// init is the dispatch libcontainer requires; it is berth's only init
// function.
func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init() // never returns
	}
}
