// Package watcher turns sources of change into consistent snapshots and
// render triggers:
//
//   - Mirror keeps a local copy of one store prefix: seeded by List,
//     advanced by Watch from the listed revision, re-listed (with backoff)
//     on compaction, a broken watch, or the periodic resync.
//   - Debouncer is the one place for timing: the quiescence window
//     (wait = "min:max"), the reload budget (min_reload_interval) and the
//     settle window of edited files (settle).
//   - Files watches template files, their includes and file sources through
//     their directories, so editors' atomic saves are seen.
//
// It does not know how output is written (package render) nor which
// templates exist (package runner).
//
// Concurrency: Mirror.Run, Files.Run and each Debouncer run until their
// context ends. Notification channels (Mirror.Subscribe, Files.Watch,
// Debouncer.C) are never closed; they carry coalesced, non-blocking signals.
package watcher
