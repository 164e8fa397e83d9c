// Package registrar keeps a host's containers registered in the store
// (design.md §4): one instance record per service a container serves under
// <prefix>/services/<service>/<host>/<id>, its full record under
// <prefix>/containers/<host>/<id>, and the host record, all bound to the
// store's lease for the TTL so that a dead host's records expire together.
//
// Every piece of routing metadata is validated with the records package's
// checks before it becomes a record (clean): host names, paths, ports,
// protocols, service names from every source, tags, weights, the name,
// image and address. An invalid value is left out of both records, field
// by field — the container's other routes stay — and reported: logged once
// per container (container, field, quoted value, reason), listed on its
// instance records (records.Instance.Invalid), and counted
// (InvalidFields).
//
// It subscribes to runtime events before it lists containers, so nothing
// falls between; reconciles the store with the runtime at start and every
// resync period (dropping this host's records that match no container);
// publishes a container with a health check only while it is healthy; and
// on stop keeps a container's records as "draining" for the drain period
// before removing them. Losing the lease (an outage longer than the TTL) is
// repaired twice over: the store grants a new lease and writes its keys
// again, and Reregister (called by the daemon when its records vanish while
// Owns still reports them) writes every record again at once.
//
// Config.Sinks get the same containers as catalog registrations (Sink,
// Registration: one per published port, with the same validation, drain
// and reconcile; a health-gated container stays registered there with its
// health, since a catalog shows it critical rather than hiding it):
// package consulcatalog is the Consul agent's. Config.NoRecords leaves the
// containers' records out of the store for a host registered in a catalog
// only.
//
// Concurrency: Run owns all state and returns when its context ends;
// Counts, Owns, OwnedUnder, Reregister and Reregistering are safe from any
// goroutine.
package registrar
