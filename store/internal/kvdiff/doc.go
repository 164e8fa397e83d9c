// Package kvdiff turns two snapshots of a key range into the store events
// that lead from one to the other. Backends without an event history
// (Consul's blocking queries, the file backend's re-reads) watch by diffing
// successive snapshots with Diff.
package kvdiff
