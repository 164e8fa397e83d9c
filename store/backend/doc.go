// Package backend opens a store.Store from a URL, choosing the backend by
// scheme:
//
//	embedded:///var/lib/berth/store   in-process etcd server (the default)
//	etcd://h1:2379,h2:2379            etcd cluster (etcds:// for TLS)
//	consul://127.0.0.1:8500           Consul KV (consuls:// for HTTPS)
//	file:///etc/berth/values.yaml     YAML/JSON file or directory, read-only
//	env://                            the environment, read-only
//
// An empty URL means the embedded store under the default state directory.
package backend
