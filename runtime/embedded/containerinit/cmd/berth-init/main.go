// Command berth-init is berth's container init: a small binary the berth
// daemon hands each container's init over to, so that a container start
// does not pay the initialisation of everything the berth binary links.
// It is not meant to be run by hand; install it next to berth (make
// build does).
package main

import (
	"fmt"
	"os"

	_ "github.com/berthd/berth/runtime/embedded/containerinit"
)

func main() {
	fmt.Fprintln(os.Stderr, "berth-init: the container init of berth, started by the berth daemon; it is not run by hand")
	os.Exit(2)
}
