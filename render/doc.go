// Package render turns a template and a snapshot of data into a file on
// disk. It does not know where the data came from.
//
// A Renderer runs the write pipeline for a cycle of jobs (Renderer.Cycle),
// one task per job: guards (min_entries, max_shrink) → execute → empty
// guard (an empty output never replaces a non-empty destination unless
// allow_empty) → compare with the destination (bytes, mode, owner;
// unchanged means no write and no command) → stage a temporary file in the
// destination's directory → check command on the staged file ({{.src}}) →
// backup → atomic swap (fsync, rename, fsync the directory; in-place
// locked write for single-file bind mounts) → reload. Identical reload
// commands run once per cycle, after all writes; a failed reload restores
// every file it was for and runs the reload again. A symbolic link as
// destination is followed.
//
// With CheckInPlace the check runs on the real configuration instead of
// the staged copy: swap in, check, swap back on failure, before any reload
// (for conf.d fragments). The guards hold across a restart: the empty
// guard reads the destination, and max_shrink's last good count is kept in
// a hidden file beside it. Renderer.Preview renders and compares without
// writing (dry runs); Renderer.Try renders, stages and checks without
// swapping, reloading or remembering (the runner's quarantine bisects with
// it).
//
// Every external command goes through a Commander with a timeout; Exec
// kills the command's whole process group when the timeout expires.
//
// A Source renders one template against one snapshot; Bind makes one from
// a template of package render/dialect (which parses and executes them) and
// its Input. ReadFixture reads the JSON context files of one-shot renders,
// MergeKVs joins the listings of several prefixes, and Diff makes the
// unified diff of a dry run. Nothing in the package starts goroutines or owns
// channels: every call returns when its work is done.
package render
