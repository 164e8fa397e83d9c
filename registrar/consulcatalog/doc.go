// Package consulcatalog is the registrar's Consul catalog backend
// (registrator's job): a registrar.Sink that registers each published port
// of this host's running containers as a service of the local Consul agent.
//
// Each service has an ID that proves berth owns it
// (berth:<host>:<container id>:<port>[:udp], with the host in its meta
// too), the record's service name, tags, meta (the record's fields and
// registrator's SERVICE_* attributes, within Consul's meta limits), address
// and port, and checks: "berth" (a TTL check berth renews, carrying
// DeregisterCriticalServiceAfter, so that Consul itself removes the
// services of a daemon that died), "container health" (a TTL check
// mirroring the container's health check, when it has one) and the
// SERVICE_CHECK_HTTP/HTTPS/TCP checks registrator defines. A draining
// container's services are put in maintenance.
//
// A definition is computed deterministically and its hash kept in the
// service's meta: a daemon that restarts within the window finds its
// services unchanged, does not register them again, and renews their TTL
// checks at once, so nothing flaps. A full sync (at start and every
// resync, and after the agent was unreachable or lost its services)
// removes this host's services that match no container and registers the
// missing ones; services of other hosts, and services berth did not
// register, are never touched.
//
// The agent being down is retried with a backoff, without removing
// anything; a service Consul refuses (an ACL token without service:write
// on its name, a definition it rejects) is reported (Refused, the log,
// naming the permission) and the others are registered.
package consulcatalog
