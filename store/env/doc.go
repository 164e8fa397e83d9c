// Package env is berth's read-only store backend on environment variables
// (env://), with confd's mapping between keys and variable names: the key
// "/app/db/port" is the variable APP_DB_PORT (drop the leading slash,
// "/" → "_", upper case), and a variable lists as its name lower-cased with
// "_" → "/" and a leading slash. List(prefix) returns the variables whose
// names start with the prefix's variable form, as confd's env backend does.
//
// A process's environment cannot change, so the data is fixed at New: every
// key has revision 1, List reports revision 1, and Watch delivers no events;
// its channel stays open until the caller's context ends (closed without a
// final response) or the store is closed (a final response with
// store.ErrClosed). Put, Delete and Txn fail with store.ErrReadOnly.
package env
