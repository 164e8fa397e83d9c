// Package consul is berth's store backend on Consul's KV store
// (consul://host:8500), through github.com/hashicorp/consul/api, except
// prefix reads (List and each blocking query of a watch): berth's own GET
// (listing.go), which reads the answer as a stream, one entry at a time
// with a JSON scanner of its own (entries.go), and keeps the previous KV
// of every entry whose key and ModifyIndex are unchanged instead of
// decoding its value again. An agent on a loopback address answers
// uncompressed (gzip there only costs CPU).
//
// Keys map one to one: berth's "/berth/x" is Consul's "berth/x"; keys
// without a leading slash are refused. A revision is a Consul raft index
// (X-Consul-Index). List is a consistent read. Put and Delete are
// single-operation Consul transactions, so a put reports the index it was
// committed at (a delete, for which Consul reports none, the index of the
// key read right after); Txn is one Consul transaction of at most 128
// operations, never split.
//
// TTL keys are bound to a Consul session (behavior "delete", one per TTL
// value, TTL rounded up to Consul's 10s minimum, lock delay 1ms) that the
// Store renews in the background. As a put replaces the lease in etcd, a
// TTL put of a key another session holds (a restarted owner's previous run,
// not expired yet) takes the key over, and a put without a TTL detaches the
// key from the session that held it (Consul keeps a key's session on a
// plain set, so the key is set again right after the transaction). The
// Store remembers the TTL keys it owns: if its session is lost (an outage
// longer than the TTL), it creates a new one and puts again the keys that
// are still missing (one written meanwhile is newer and stays), retrying
// until they are back. Close destroys the sessions, which deletes their
// keys. A process that dies without Close loses its keys when Consul
// invalidates the session, up to twice the TTL later.
//
// Watch reads the prefix before it returns (so nothing written after the
// call is missed), unless it watches from a revision whose state it
// remembers (a List's: the first blocking query then starts from it),
// then runs blocking queries and turns each new state into
// events by diffing it against the previous one (kvdiff), so several changes
// of one key between two responses fold into the last one. To watch from a
// revision, the Store needs the state at that revision: it keeps the last
// few List and watch results, and a watch from an older revision ends with
// store.ErrCompacted, as does an index going backwards (agent restarted,
// snapshot restored). Transient HTTP errors are retried for a bounded time
// (Config.WatchRetry), then the watch ends with store.ErrUnavailable; each
// query is bounded (Config.BlockingWait plus the dial timeout), so a hung
// agent ends a watch the same way.
//
// Channels: Watch's goroutine owns and closes its channel, when the caller's
// context ends (no final response) or after one final response with Err set
// (ErrCompacted, ErrUnavailable, ErrClosed after Close, or an ACL denial).
package consul
