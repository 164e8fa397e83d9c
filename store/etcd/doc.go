// Package etcd is the store.Store backend on etcd v3: New connects to an
// etcd cluster (TLS, username/password), Embedded runs berth's default
// store — an in-process etcd server on 127.0.0.1 under a directory — or
// joins the process already serving that directory.
//
// TTL keys are bound to one lease per TTL, kept alive in the background; if
// a lease is lost (the cluster was unreachable for longer than the TTL) the
// store grants a new one and writes its keys again. Watch channels are
// closed by the store: after a final response with Err set, or when the
// caller's context ends.
package etcd
