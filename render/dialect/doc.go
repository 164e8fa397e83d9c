// Package dialect parses and executes berth's templates. A template is Go
// text/template source in one of three dialects, each with its own data
// (context) and function set:
//
//   - native: .Services, .Containers, .Hosts, .Env, .Revision; sprig v3
//     without its nondeterministic functions (unless allowed); consul-template's
//     key helpers (key, keyOrDefault, keyExists, ls, safeLs, tree, safeTree)
//     and confd's getv/getvs/get/gets/lsdir over the snapshot.
//   - docker-gen: $ is the container list in docker-gen's RuntimeContainer
//     shape with $.Env, $.Docker and $.CurrentContainer; sprig plus
//     docker-gen's own functions, which take precedence.
//   - confd: memkv's get/gets/getv/getvs/ls/lsdir/exists over the snapshot
//     (keys relative to the resource prefix) and confd's helper functions.
//
// Parse reads a template and its include files once; an unknown function,
// like any syntax error, is a parse error. Execute renders one consistent
// snapshot (Input) and writes the output only if rendering succeeded. Every
// error names file:line:col (1-based columns) as an *Error.
//
// A Template is immutable after Parse and safe for concurrent Execute calls:
// each call works on its own clone with functions bound to its Input. The
// package holds no state and starts no goroutines.
package dialect
