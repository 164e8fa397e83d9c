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
