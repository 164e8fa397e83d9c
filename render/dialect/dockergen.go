package dialect

import (
	"bytes"
	"errors"
	"maps"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/template"
	"unsafe"

	"github.com/berthd/berth/records"
)

// dockerGenContext is $ of a docker-gen template, like docker-gen's
// Context: the list of containers, with the methods Env, Docker and
// CurrentContainer.
type dockerGenContext []*records.Container

// dockerGenRoot holds $ and what its methods return. The template gets
// &root.list; since list is the first field, a *dockerGenContext that
// points at it also points at the root. $ has to be a slice (templates
// range over it and pass it to where) and still answer $.Env, so the
// methods find their data this way. Only newDockerGenRoot makes a
// *dockerGenContext a template can call methods on, and no other value of
// the type exists: the list functions (where*, ...) return plain
// []*records.Container, so the cast in root can only ever see root.list.
type dockerGenRoot struct {
	list    dockerGenContext // must stay the first field
	env     map[string]string
	docker  records.Docker
	current *records.Container
}

func (c *dockerGenContext) root() *dockerGenRoot { return (*dockerGenRoot)(unsafe.Pointer(c)) }

// Env is the environment berth runs with (or Input.Env): $.Env.
func (c *dockerGenContext) Env() map[string]string { return c.root().env }

// Docker describes the container engine: $.Docker.
func (c *dockerGenContext) Docker() records.Docker { return c.root().docker }

// CurrentContainer is the container berth runs in, or nil: a berth
// addition, the same as where $ "ID" $.Docker.CurrentContainerID | first.
func (c *dockerGenContext) CurrentContainer() *records.Container { return c.root().current }

func dockerGenData(prefix string, x *execution) (any, error) {
	cs := x.in.Containers
	if cs == nil {
		r, err := decodeRecords(prefix, x.kv.kvs, true, nil)
		if err != nil {
			return nil, err
		}
		cs = r.containers
	}
	root := &dockerGenRoot{list: make(dockerGenContext, len(cs)), env: x.env, docker: x.in.Docker}
	if root.docker.CurrentContainerID == "" {
		root.docker.CurrentContainerID = x.in.CurrentContainerID
	}
	for i := range cs {
		root.list[i] = &cs[i]
		if cs[i].ID != "" && cs[i].ID == root.docker.CurrentContainerID {
			root.current = root.list[i]
		}
	}
	return &root.list, nil
}

// dockerGenFuncs is sprig overridden by docker-gen's own functions, as in
// docker-gen's newTemplate.
func dockerGenFuncs() *funcSet {
	m := sprigFuncs()
	sp := maps.Clone(m) // sprig before docker-gen's overrides, for the aliases
	own := template.FuncMap{
		"closest":                 closest,
		"coalesce":                coalesce,
		"comment":                 comment,
		"contains":                hasMapKey,
		"dir":                     dirList,
		"exists":                  pathExists,
		"groupBy":                 groupBy,
		"groupByWithDefault":      groupByWithDefault,
		"groupByKeys":             groupByKeys,
		"groupByMulti":            groupByMulti,
		"groupByLabel":            groupByLabel,
		"groupByLabelWithDefault": groupByLabelWithDefault,
		"include":                 include,
		"intersect":               intersect,
		"keys":                    mapKeys,
		"replace":                 strings.Replace,
		"parseBool":               strconv.ParseBool,
		"fromYaml":                fromYaml,
		"toYaml":                  toYaml,
		"mustFromYaml":            mustFromYaml,
		"mustToYaml":              mustToYaml,
		"queryEscape":             url.QueryEscape,
		"split":                   strings.Split,
		"splitN":                  strings.SplitN,
		"sortStringsAsc":          sortStringsAsc,
		"sortStringsDesc":         sortStringsDesc,
		"sortObjectsByKeysAsc":    sortObjectsByKeysAsc,
		"sortObjectsByKeysDesc":   sortObjectsByKeysDesc,
		"toLower":                 strings.ToLower,
		"toUpper":                 strings.ToUpper,
		"when":                    when,
		"where":                   where,
		"whereNot":                whereNot,
		"whereExist":              whereExist,
		"whereNotExist":           whereNotExist,
		"whereAny":                whereAny,
		"whereAll":                whereAll,
		"whereLabelExists":        whereLabelExists,
		"whereLabelDoesNotExist":  whereLabelDoesNotExist,
		"whereLabelValueMatches":  whereLabelValueMatches,
		"mustBeOneOf":             mustBeOneOf,
		"mustBeInt":               mustBeInt,
		"mustBeIntInRange":        mustBeIntInRange,
		"nginxMustParseHSTS":      nginxMustParseHSTS,
		"nginxQuote":              nginxQuote,
		// docker-gen's legacy names for sprig functions
		"json":      sp["mustToJson"],
		"parseJson": sp["mustFromJson"],
		"sha1":      sp["sha1sum"],
		// the sprig functions docker-gen's own ones hide
		"sprigCoalesce": sp["coalesce"],
		"sprigContains": sp["contains"],
		"sprigDir":      sp["dir"],
		"sprigReplace":  sp["replace"],
		"sprigSplit":    sp["split"],
		"sprigSplitn":   sp["splitn"],
	}
	for k, v := range own {
		m[k] = v
	}
	return &funcSet{parse: m, bind: func(x *execution) template.FuncMap {
		b := template.FuncMap{"eval": unbound}
		bindEnv(b, x)
		if x != nil {
			b["eval"] = x.eval
		}
		return b
	}}
}

// eval executes the named template with data (none, or one value) and
// returns its output: docker-gen's eval.
func (x *execution) eval(name string, args ...any) (string, error) {
	var data any
	switch len(args) {
	case 0:
	case 1:
		data = args[0]
	default:
		return "", errors.New("too many arguments")
	}
	var buf bytes.Buffer
	if err := x.tmpl.ExecuteTemplate(&buf, name, data); err != nil {
		return "", err
	}
	return buf.String(), nil
}

// include returns the contents of a file, or "" when it cannot be read.
func include(file string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return ""
	}
	return string(b)
}

// pathExists reports whether a file or directory exists.
func pathExists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	}
	return false, err
}

// dirList returns the names in a directory, sorted; none when it cannot be
// read.
func dirList(path string) ([]string, error) {
	names := []string{}
	entries, err := os.ReadDir(path)
	if err != nil {
		return names, nil
	}
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, nil
}

// when returns yes when cond holds, else no.
func when(cond bool, yes, no any) any {
	if cond {
		return yes
	}
	return no
}

// coalesce returns the first argument that is not nil (unlike sprig's,
// which skips empty values too).
func coalesce(args ...any) any {
	for _, a := range args {
		if a != nil {
			return a
		}
	}
	return nil
}

// closest returns the longest of values that is a substring of input.
func closest(values []string, input string) string {
	best := ""
	for _, v := range values {
		if len(v) > len(best) && strings.Contains(input, v) {
			best = v
		}
	}
	return best
}
