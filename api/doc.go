// Package api is the berth daemon's HTTP API on a unix socket (mode 0660)
// and its Go client. It serves the embedded container runtime: containers
// (run, list, inspect, start, stop, kill, restart, rm, logs, exec), the
// event stream, and images (list, pull, load, import, rm).
//
// Streams (logs, exec, events, pull) are newline-delimited JSON Frames.
// An exec with stdin or a terminal sends its input as JSON values in the
// request body while the output streams back (full duplex); load and
// import send the tarball itself as the request body, so the client's
// files need not be visible to the daemon.
// The Client implements runtime.Runtime, so anything written against that
// interface can drive a remote daemon. Channels returned by
// Client.Events are closed by the client when the stream ends or ctx is
// cancelled; the error channel carries at most one error.
package api
