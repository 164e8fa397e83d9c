// Package render turns a template and a snapshot of data into a file on
// disk: it parses templates in one of three dialects (native, docker-gen,
// confd), executes them, and runs the write pipeline — compare, stage,
// check, atomic swap, reload, and rollback when the reload fails. It does
// not know where the data came from.
package render
