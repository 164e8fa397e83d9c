// Package daemon is berth up. Run(ctx, Settings) assembles it: it opens
// the container runtime and the store, serves the berth API, the
// Docker-compatible API and /metrics + /healthz + the status page
// (status.go: package status on the listen address; credentials from
// [daemon.status] required off loopback), reads the signals
// (SIGHUP re-reads the templates; SIGINT/SIGTERM, or the end of ctx, stop
// it; stop signals within Settings.SignalWindow of the first are one
// request, a later one cuts the shutdown's waits short) and shuts down
// (Settings.StopContainers, Remove). cmd/berth only parses flags and the
// configuration into Settings.
//
// Under it, a Daemon (New) runs the registrar (this host's containers →
// records in the store, keyed as package records says) and the runner (records →
// rendered templates → checked, swapped, reloaded) over one store, with
// Prometheus metrics and a health check:
//   - /healthz answers 503 ("unhealthy") when store reads or writes have
//     failed or gone unanswered, a watch has failed or not synced, or this
//     host's records have stayed lost, for longer than Config.StallAfter;
//     200 "degraded" when a template has failed to apply for longer than
//     that (the last good output serving on); else 200 "ok".
//   - The runner reads the store through a hold: when a watch delivers the
//     removal of records the registrar owns (a lease the store revoked
//     after an outage), it holds the watch back while the registrar writes
//     them again, then delivers both as one response, so that no render
//     sees the gap (at most Config.RegisterHold).
//
// New does not own the store and runtime it is given; Run opens and closes
// its own.
//
// Concurrency: Daemon.Run starts the registrar and the runner and returns
// when its context ends, after both have stopped. Reload, Handler and
// Health may be called from any goroutine while it runs.
package daemon
