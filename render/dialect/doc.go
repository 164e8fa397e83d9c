// Package dialect parses and executes berth's templates. A template is Go
// text/template source in one of three dialects, each with its own data
// (context) and function set:
//
//   - native: .Services (service → instances sorted by host, id),
//     .Containers, .Hosts, .Env, .Revision, decoded from the record keys of
//     the snapshot; sprig v3 without its nondeterministic functions unless
//     Options.AllowNondeterministic (see Nondeterministic); consul-template's
//     key, keyOrDefault, keyExists, ls, safeLs, tree and safeTree, and
//     confd's getv, getvs, gets, lsdir and exists, over the snapshot's keys
//     (sprig's get stays the dict lookup); and berth's escaping functions
//     for the formats templates write — nginxString, nginxToken,
//     nginxComment, haproxyString, shellQuote, jsonString — with
//     checkHost, checkPath, checkProto, checkPort, checkIP and checkService,
//     which apply the registrar's validation (package records) and return
//     why a value is invalid ("" when it is valid). An escaping function
//     never passes a value through unsafe: what it cannot make safe fails
//     the render, so a template checks first and leaves a bad value out
//     with warn (see templates/nginx.tmpl). Records can be written by
//     anyone with access to the store, not only by berth's registrar.
//   - docker-gen: $ is the container list in docker-gen's RuntimeContainer
//     shape, with $.Env, $.Docker and $.CurrentContainer; sprig, overridden
//     by docker-gen's own functions (where*, groupBy*, sortObjectsByKeys*,
//     nginxQuote, ...) and its sprig* escapes. Blank lines are removed from
//     the output unless Options.KeepBlankLines. This dialect stays
//     byte-compatible with docker-gen — nginx-proxy's nginx.tmpl is theirs
//     and prints VIRTUAL_HOST and VIRTUAL_PATH as given — so it gets none
//     of the native escaping functions and berth does not change what its
//     functions return. The protection there is the registrar's validation:
//     the container records it writes (docker-gen's view) hold no invalid
//     VIRTUAL_HOST name, VIRTUAL_PATH, VIRTUAL_PORT, VIRTUAL_PROTO, name or
//     image. That covers docker-gen templates rendered from the store
//     (berth up); records written into the store by others are not
//     checked, and `berth docker-gen`, which reads the Docker Engine
//     directly as docker-gen does, trusts container metadata as docker-gen
//     does.
//   - confd: memkv's get, gets, getv, getvs, ls, lsdir and exists over the
//     snapshot, keys relative to the resource prefix, and confd's helpers.
//
// Where the peers iterate Go maps (sprig's keys and values, docker-gen's
// keys, groupByKeys and intersect), berth sorts, so that the same snapshot
// always renders the same bytes.
//
// Parse reads a template and its include files once; an unknown function,
// like any syntax error, is a parse error. Execute renders one consistent
// snapshot (Input) and writes the output only if rendering succeeded. Every
// error is an *Error naming file:line:col (1-based column).
//
// A render after one change costs about the change (memo.go, index.go,
// incremental.go): a Template keeps, from one Execute to the next, the JSON
// values it decoded (fromJson, confd's json: once per value text), the
// instance records (by key and bytes), an index of the snapshot's
// directories that follows it by the keys added and removed (lsdir, ls),
// and, in the native dialect, the output of every outermost range body
// that depends only on its iteration and its store reads: such a body runs
// again only when one of its reads (a key, the keys under a prefix, a
// listing) reads differently; otherwise its earlier bytes are spliced in.
// The output is always a full render's; AllowNondeterministic turns the
// block memo off.
//
// A Template's parsed form does not change after Parse and it is safe for
// concurrent Execute calls: each call works on its own clone of the parsed
// templates, with the key functions bound to its Input; the memo is used by
// one call at a time (another renders without it, with the same output).
// The package holds no package-level state and starts no goroutines.
package dialect
