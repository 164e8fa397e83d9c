// Package runner keeps template outputs current: it ties the watcher
// (mirrors of store prefixes, quiescence, file watches) to the render
// pipeline, the way consul-template's manager ties dependencies to its
// renderer. One mirror per prefix is shared by every template that reads
// it; a template renders only after all its prefixes finished their first
// sync; a failed render, check or reload is retried with backoff and the
// last good output stays in place.
//
// Concurrency: Run owns all state and returns when its context ends;
// Update and Status talk to it over channels and may be called from any
// goroutine while Run runs.
package runner
