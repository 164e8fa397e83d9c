// Package haproxy applies live endpoint sets to a running HAProxy through
// its Runtime API (the stats socket, level admin), with no reload: Client
// speaks the commands berth needs (show servers state, add/del server,
// set server state/addr/weight, enable health, show/add/set/del map) and
// turns HAProxy's refusals into errors naming the command and the server;
// Sink is the endpoints.Sink that diffs a Set against HAProxy's current
// servers and applies the difference. templates/haproxy.cfg.tmpl renders
// the structure it applies to: one backend per upstream, no servers, and
// host routing through a map file the Sink keeps.
//
// HAProxy 2.6 (Debian 12) needs no experimental mode for any of this.
// Dynamic servers need a backend with a dynamic balance algorithm; the
// template uses roundrobin or leastconn, never random (on 2.6.12 a server
// added second to an empty "balance random" backend can get no traffic).
package haproxy
