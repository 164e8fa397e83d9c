package templates

import (
	"fmt"
	"io/fs"
	"slices"
	"strings"
)

// Prefix marks a shipped template where a template file is named (src,
// includes, --template): "builtin:nginx" is nginx.tmpl out of the binary.
const Prefix = "builtin:"

// Builtin resolves a template path that names a shipped template:
// "builtin:NAME" with NAME one of the files (nginx.tmpl), its ".tmpl"
// suffix optional. It returns the canonical path ("builtin:nginx.tmpl")
// and the text; ok is false when path does not start with Prefix. An
// unknown name is an error that lists the shipped ones.
func Builtin(path string) (canonical string, text []byte, ok bool, err error) {
	name, ok := strings.CutPrefix(path, Prefix)
	if !ok {
		return "", nil, false, nil
	}
	for _, n := range []string{name, name + ".tmpl"} {
		if b, err := fs.ReadFile(files, n); err == nil && !strings.Contains(n, "/") {
			return Prefix + n, b, true, nil
		}
	}
	return "", nil, true, fmt.Errorf("unknown builtin template %q: berth ships %s", path, strings.Join(Names(), ", "))
}

// Names lists the shipped templates as src names them, sorted:
// builtin:nginx, builtin:nginx.conf.
func Names() []string {
	ents, _ := fs.Glob(files, "*.tmpl")
	out := make([]string, len(ents))
	for i, e := range ents {
		out[i] = Prefix + strings.TrimSuffix(e, ".tmpl")
	}
	slices.Sort(out)
	return out
}
