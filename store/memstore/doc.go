// Package memstore is an in-memory store.Store for fast tests and one-shot
// fixtures: no process, no disk, no network. It passes the same
// store/storetest conformance suite as the real backends — revisions,
// watch from a revision, compaction (ErrCompacted), TTL leases, atomic
// transactions, prefix deletes — so code tested against it behaves the same
// on etcd. It is not a production backend: everything is lost with the
// process, and history grows until Compact is called.
//
// A Server holds the data; each Open returns a client Store with its own
// leases, like one process's connection to etcd. While a client is open its
// leases are kept alive; Close revokes them (their keys go now), Detach
// abandons them as a killed process would (their keys go after the TTL, or
// at once with Server.Expire). Server.Compact drops history so that watches
// from before it fail with ErrCompacted.
//
// Concurrency: one mutex guards the server. Watch channels are owned and
// closed by the store: after a final response with Err set (ErrCompacted,
// ErrClosed), or when the caller's context ends.
package memstore
