// Package store defines berth's key/value contract: a directory-style store
// that lists a prefix consistently at one revision, watches a prefix from a
// revision without missing changes, binds keys to a TTL lease, and applies
// several writes atomically.
//
// Backends live in sub-packages, one each (store/etcd — which also runs the
// embedded etcd server —, store/consul, store/file, store/env); store/backend
// opens one from a URL, and store/storetest is the conformance suite every
// backend passes.
//
// Concurrency: a Store is safe for concurrent use. The channel returned by
// Watch is owned and closed by the backend: after the final response (whose
// Err is set) or when the caller's context ends.
package store
