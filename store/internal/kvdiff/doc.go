// Package kvdiff turns two snapshots of a key range into the store events
// that lead from one to the other, for backends without an event history
// (Consul's blocking queries, the file backend's re-reads): Diff compares
// two snapshots, and History keeps the last few snapshots so a watch can
// resume from a revision that List returned.
package kvdiff
