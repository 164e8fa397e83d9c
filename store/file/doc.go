// Package file is berth's read-only store backend on YAML or JSON files
// (file:///etc/berth/values.yaml, or a directory of *.yaml, *.yml and *.json
// files, recursively, merged in lexical order; hidden files and directories
// are skipped, so editors' temporary files and Kubernetes' ..data
// directories are not read).
//
// Documents are flattened to keys exactly as confd's file backend does:
// map keys and list indexes become path segments ("/a/b/0" is the first
// element of list b under a); strings, integers, booleans and floats become
// values; nulls make no key. JSON is read with the same YAML parser, as in
// confd.
//
// Revisions count changes of the data since New: each re-read that changes
// any value is one revision, and a key keeps the revision of its last
// change. Get, List and Watch re-read the files when they changed (so they
// never lag behind an edit); a syntax error fails Get and List with the file
// and line. Put, Delete and Txn fail with store.ErrReadOnly.
//
// Watch follows fsnotify events on the directory (not the file, so that
// editors' rename-on-save and a Kubernetes ConfigMap's symlink swap are
// seen), re-reads, and diffs the new data
// against the old (kvdiff). A file that does not parse keeps the last good
// data; the error is logged with file and line and nothing is emitted until
// the file is fixed. The last few revisions are kept so Watch can resume
// from them; older ones end the watch with store.ErrCompacted.
//
// Channels: each Watch's goroutine owns and closes its channel, when the
// caller's context ends (no final response) or after a final response with
// Err set (ErrCompacted, or ErrClosed after Close). Close waits for the
// fsnotify goroutine to stop.
package file
