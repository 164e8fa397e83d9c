package dialect

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/template"
)

// Catalog answers a native template's catalog functions — consul-template's
// service, services, node and nodes — from one snapshot of the Consul
// catalog (package catalog implements it).
//
// Contract:
//   - Lookup is called with the function's name and arguments, as the
//     template passed them. It returns the function's result; ok false
//     means the catalog has no answer for that query yet: data is then the
//     empty result of the function's type, the query is started, and the
//     execution ends in ErrPending (nothing is written, the render is held
//     until the answer arrives). err is for arguments that do not parse.
//   - Lookups with equal arguments return the same data within one
//     snapshot.
//   - Done is called after each execution that ran to its end (complete,
//     or held on pending lookups): the lookups it made are everything the
//     template reads now, and the catalog may drop what it no longer
//     reads.
//   - Count is the number of entries (instances, services, nodes) in the
//     snapshot's answers, which the render guards add to the store keys;
//     known is false while no execution of the template ran to its end
//     (what it reads is not known yet).
type Catalog interface {
	Lookup(fn string, args []string) (data any, ok bool, err error)
	Done()
	Count() (n int, known bool)
}

// catalogCount is the number of catalog entries in's template reads. A
// catalog that does not know yet what the template reads learns it from
// an execution whose output is dropped (its warnings and endpoints too):
// a guard that refuses the first render for too few entries then waits
// for the answers that execution asked for, instead of for ever.
func (t *Template) catalogCount(in Input) int {
	if in.Catalog == nil || t.opts.Dialect != Native {
		return 0
	}
	n, known := in.Catalog.Count()
	if !known {
		probe := in
		probe.Warn, probe.Endpoints = nil, nil
		_ = t.Execute(io.Discard, probe)
		n, _ = in.Catalog.Count()
	}
	return n
}

// ErrPending is the error of an execution that looked up a catalog query
// with no answer yet: nothing is written, and the render is held (not
// failed) until the catalog has every answer.
var ErrPending = errors.New("waiting for the first answer of a catalog query")

// catalogFuncNames are the functions Catalog answers; they read data
// outside the key/value snapshot, so they are impure for memoization.
var catalogFuncNames = []string{"service", "services", "node", "nodes"}

// catalogFuncs binds the catalog functions to x's Input.Catalog.
func catalogFuncs(m template.FuncMap, x *execution) {
	for _, fn := range catalogFuncNames {
		if x == nil {
			m[fn] = unbound
			continue
		}
		m[fn] = func(args ...string) (any, error) {
			if fn == "service" && (len(args) == 0 || args[0] == "") {
				return []any{}, nil // consul-template: no name, no query
			}
			if x.in.Catalog == nil {
				return nil, fmt.Errorf("%s: no Consul catalog is configured for this template ([catalog] in berth.toml, or berth render --consul ADDR)", fn)
			}
			data, ok, err := x.in.Catalog.Lookup(fn, args)
			if err != nil {
				return nil, err
			}
			if !ok {
				call := fn
				for _, a := range args {
					call += fmt.Sprintf(" %q", a)
				}
				x.pending = append(x.pending, call)
			}
			return data, nil
		}
	}
}

// pendingError is the error of a held execution.
func pendingError(pending []string) error {
	return fmt.Errorf("%w: %s", ErrPending, strings.Join(pending, ", "))
}
