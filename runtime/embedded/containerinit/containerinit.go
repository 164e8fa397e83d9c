package containerinit

import (
	"os"
	"runtime"

	"github.com/opencontainers/runc/libcontainer"

	// nsenter's cgo constructor joins and creates namespaces before the Go
	// runtime starts; without the devices package the cgroup manager
	// cannot set device rules.
	_ "github.com/opencontainers/cgroups/devices"
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
)

// init is the dispatch libcontainer requires; it is berth's only init
// function.
//
// Otherwise it keeps the main thread for the main goroutine. libcontainer
// runs goroutines that lock a thread, setns() it into a container's mount
// namespace and exit; Go discards such a thread, except the main thread,
// which it parks for good, still in that namespace, so /proc/self (which
// is the main thread's view) would show the container's mounts and keep
// its namespace alive.
func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init() // never returns
	}
	runtime.LockOSThread()
}
