// Package watcher turns sources of change (store prefixes, template files,
// file sources) into consistent snapshots for rendering: one local mirror per
// watched prefix, seeded by List and advanced by Watch, resynced on
// compaction, reconnect or doubt, and released to renderers after
// quiescence (wait min:max).
package watcher
