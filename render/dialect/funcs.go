package dialect

import (
	"fmt"
	"maps"
	"slices"
	"text/template"

	sprig "github.com/Masterminds/sprig/v3"
)

// funcSet is a dialect's function set. parse holds every name the
// templates may call: the functions that need the snapshot are stubs there,
// replaced per execution by bind.
type funcSet struct {
	parse template.FuncMap
	// denied maps a function left out of the set to why, for the parse
	// error.
	denied map[string]string
	// bind returns the functions bound to one execution.
	bind func(x *execution) template.FuncMap
}

// unknown is the message for a call of an undefined function.
func (fs *funcSet) unknown(name string) string {
	if why, ok := fs.denied[name]; ok {
		return fmt.Sprintf("function %q is not available: %s", name, why)
	}
	return fmt.Sprintf("unknown function %q", name)
}

// functions returns the function set of opts.Dialect.
func functions(opts Options) (*funcSet, error) {
	var fs *funcSet
	switch opts.Dialect {
	case Native:
		fs = nativeFuncs(opts)
	case DockerGen:
		fs = dockerGenFuncs()
	case Confd:
		fs = confdFuncs()
	default:
		return nil, fmt.Errorf("unknown template dialect %q (want %s, %s or %s)", opts.Dialect, Native, DockerGen, Confd)
	}
	// The stubs only make the names known to the parser; bind provides
	// the real functions for each execution.
	for name := range fs.bind(nil) {
		if _, ok := fs.parse[name]; !ok {
			fs.parse[name] = unbound
		}
	}
	return fs, nil
}

// unbound stands for a function that is bound per execution.
func unbound() (string, error) { return "", fmt.Errorf("function called outside an execution") }

// nondeterministic lists the sprig functions whose result changes from
// call to call with the same arguments — the clock, randomness, key
// generation, DNS. The native dialect leaves them out unless
// Options.AllowNondeterministic is set, because a changing output reloads
// the service on every render.
//
// sprig's date functions (date, dateInZone, htmlDate, ...) and
// durationRound fall back to the current time for an argument that is not
// a time; the native dialect keeps them but makes that case an error
// instead (see hermeticDates).
var nondeterministic = []string{
	"now", "ago",
	"randAlphaNum", "randAlpha", "randAscii", "randNumeric", "randBytes", "randInt", "shuffle",
	"uuidv4",
	"bcrypt", "htpasswd", "encryptAES",
	"genPrivateKey", "genCA", "genCAWithKey", "genSelfSignedCert", "genSelfSignedCertWithKey",
	"genSignedCert", "genSignedCertWithKey",
	"getHostByName",
}

// Nondeterministic returns the names of the functions the native dialect
// needs AllowNondeterministic for.
func Nondeterministic() []string { return slices.Clone(nondeterministic) }

// sprigFuncs returns a fresh copy of sprig's text/template functions, with
// keys and values in key order rather than Go's random map order, so that
// the output of a template does not change from render to render.
func sprigFuncs() template.FuncMap {
	m := sprig.TxtFuncMap()
	m["keys"] = sortedDictKeys
	m["values"] = dictValues
	return m
}

// sortedDictKeys returns the keys of every dict, each dict's sorted, in
// the order of the dicts (sprig's keys, ordered).
func sortedDictKeys(dicts ...map[string]any) []string {
	out := []string{}
	for _, d := range dicts {
		out = append(out, slices.Sorted(maps.Keys(d))...)
	}
	return out
}

// dictValues returns the values of dict in the order of its keys (sprig's
// values, ordered).
func dictValues(dict map[string]any) []any {
	out := make([]any, 0, len(dict))
	for _, k := range slices.Sorted(maps.Keys(dict)) {
		out = append(out, dict[k])
	}
	return out
}
