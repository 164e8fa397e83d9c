// Package explain answers "why is this (not) routed?" for one container,
// host name or service, from what berth itself sees: the records in the
// store (key, revision, the fields the registrar left out and why), the
// runtime's view of the container (stopped, unhealthy, ignored: the
// registrar's own rule, registrar.Skipped), the live endpoint grouping the
// shipped templates use (endpoints.Build), the runner's quarantine, and the
// current output file of every template that reads the records. A Report
// prints as plain words, one thing per line (Report.Text), or as JSON.
//
// It also holds TemplateState, the daemon's templates with their last
// render, which berth explain and berth plan read from the daemon's API
// socket, and Dump, the exact data a template's dot is (berth render
// --context-dump).
package explain
