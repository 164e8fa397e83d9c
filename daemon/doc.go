// Package daemon is what berth up runs besides the container runtime: the
// registrar (this host's containers → records in the store, design.md §4)
// and the runner (records → rendered templates → checked, swapped,
// reloaded), over one store, with Prometheus metrics and a health check.
//
// The caller opens the store and the runtime (either may be remote) and
// serves Handler on a listener of its choice; the Daemon does not own
// them and does not close them.
//
// Concurrency: Run starts the registrar and the runner and returns when
// its context ends, after both have stopped. Reload, Handler and Health may
// be called from any goroutine while Run runs.
package daemon
