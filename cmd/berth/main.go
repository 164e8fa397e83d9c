// Command berth is the one binary: daemon, sidecar, one-shot renderer,
// key/value and container CLI.
package main

import (
	"os"
)

func main() {
	os.Exit(execute(os.Args[1:]))
}
