// Package bench measures berth against real parts — stores, the embedded
// runtime and runc, the watch pipeline, nginx end to end, docker-gen mode
// against the Docker Engine — for the berth
// bench command, which parses the flags and prints the results. Each
// measurement returns a result struct whose JSON field names are part of
// berth's interface (bench output is compared across runs). Backends,
// containers, bridges, cgroups and temporary directories a measurement
// creates are removed when it returns.
package bench
