// Package status is berth up's status page: what the daemon sees, served
// read-only on its listener ([daemon] listen) next to /metrics and
// /healthz, as one HTML page (embedded, no build step, no external
// assets) that updates itself over server-sent events, and as JSON.
//
// Build turns an Input (the store's records, the runner's template
// statuses, what Renders saw of each render attempt, the store's health,
// cluster members, deploy history; daemon/status.go gathers it) into a
// View: services → instances with their state (running, healthy,
// starting, unhealthy, draining, quarantined) and the reasons an instance
// is not routable (its record's invalid fields, health, drain, a
// template's quarantine, no address); containers with their records;
// templates (last render, revision, outcome, last check and reload, the
// diff of the last change, quarantined keys, time per phase); the store
// (backend, endpoint, health, watch lag); cluster members and deploys.
//
// Server serves it (see Server.Handler for the routes):
//
//	GET /                  the page
//	GET /api/v1/status     the whole View; /api/v1/{services,containers,
//	                       hosts,templates,store,health,cluster,deploys}
//	                       one part of it
//	GET /api/v1/events     text/event-stream: an event "status" whose
//	                       data is the whole View, at connect and after
//	                       every change (at most one per 100ms), and every
//	                       2s while connected
//
// Durations in the JSON are nanoseconds (fields ending in _ns), times
// RFC 3339. Every record value is input from whoever runs a container:
// the page inserts values as text, never as markup, under a
// Content-Security-Policy that allows only its own inline script and
// style; a container's environment is shown only for its routing
// variables (VIRTUAL_*, SERVICE_*), the rest may hold secrets.
//
// Auth (basic auth, or a bearer token) guards every route when set; the
// daemon requires it for a listener that is not a loopback address
// (daemon/status.go, config.Status).
package status
