// Package endpoints owns live endpoint sets: the upstreams of a proxy and
// the servers in each (address, weight, draining), built from instance
// records, and the Sink contract through which a running proxy takes a new
// set without a reload (nginx's Lua balancer, HAProxy's Runtime API).
//
// A template that declares live membership renders only the structure of
// the proxy's configuration (hosts, paths, protocols, upstream names);
// Build gives the membership, grouped exactly as the shipped nginx
// templates group it, and UpstreamName is the one function that names an
// upstream, used by Build and by the templates (upstreamName). A Builder
// is Build with a memo of every instance it validated, for sets built
// again on every change: the same result, without validating the
// unchanged instances again. A Pusher
// keeps the last set of one template and hands it to the Sink again until
// it is applied, so a set is never lost while the proxy is down.
package endpoints
