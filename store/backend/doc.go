// Package backend opens a store.Store from a URL, choosing the backend by
// scheme:
//
//	embedded:///var/lib/berth/store   in-process etcd server (the default)
//	etcd://h1:2379,h2:2379            etcd cluster (etcds:// for TLS)
//	consul://127.0.0.1:8500           Consul KV (consuls:// for HTTPS)
//	file:///etc/berth/values.yaml     YAML/JSON file or directory, read-only
//	env://                            the environment, read-only
//
// An empty URL means the embedded store under the state directory
// (WithStateDir, else DefaultStateDir). "embedded://" without a path is a
// bad URL. By default a missing embedded store is created and served; the
// store commands open with WithMustExist and WithJoinOnly, so that they
// never create a store nor serve one themselves.
package backend
