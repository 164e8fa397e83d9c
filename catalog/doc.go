// Package catalog is the Consul catalog as a template data source:
// consul-template's service, services, node and nodes, answered from
// blocking queries that one Catalog shares among every template of a
// daemon (one query per distinct dependency, whatever the number of
// templates reading it).
//
// A template's dependencies are known only when it executes: each
// template reads through its own View (a runner.Source), whose snapshot
// answers the template's lookups from the data in hand and starts the
// query of a dependency it has no answer for yet; the execution then
// fails with dialect.ErrPending, the runner holds the render, and the
// first answer notifies the view, which renders again. Results have
// consul-template's types, fields and order, so that a consul-template
// template renders byte for byte as consul-template renders it.
package catalog
