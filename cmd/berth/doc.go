// Command berth is the one binary: daemon, sidecar, one-shot renderer,
// key/value and container CLI.
package main
