// Package storetest is the conformance suite every store.Store backend
// passes: watch ordering, nothing lost between List and Watch, compaction,
// cancellation, TTL keys of a dead owner, transaction atomicity, large
// listings and values, odd keys, concurrent writers.
//
// A backend's test calls Run with a Harness describing how to reach it and
// which of its abilities apply; read-only backends run the read and watch
// subset, with the suite changing their data through Harness.Write.
package storetest
