package file

import (
	"fmt"
	"path"
	"regexp"
	"strconv"

	"go.yaml.in/yaml/v2"
)

// parseFile parses data, the content of the YAML or JSON file name, and
// flattens it into vars the way confd's file backend does. Syntax errors
// name the file and line.
func parseFile(name string, data []byte, vars map[string]string) error {
	// JSON is read as YAML (flow style), exactly as confd does, so both
	// kinds of file give the same keys and values.
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return syntaxError(name, err)
	}
	flatten(doc, "/", vars)
	return nil
}

// yamlLine matches the position yaml reports in its errors.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError turns a yaml error into "file:line: message".
func syntaxError(name string, err error) error {
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		return fmt.Errorf("%s:%s: %s", name, m[1], m[2])
	}
	return fmt.Errorf("%s: %w", name, err)
}

// flatten walks a decoded document as confd's nodeWalk does: map keys and
// list indexes become path segments joined with path.Join (so "/a/b/0" is
// the first element of list b under a), and strings, integers, booleans
// and floats become values; nulls (and anything else) make no key.
func flatten(node any, key string, vars map[string]string) {
	switch n := node.(type) {
	case []any:
		for i, v := range n {
			flatten(v, path.Join(key, strconv.Itoa(i)), vars)
		}
	case map[any]any:
		for k, v := range n {
			flatten(v, path.Join(key, fmt.Sprint(k)), vars)
		}
	case string:
		vars[key] = n
	case int:
		vars[key] = strconv.Itoa(n)
	case bool:
		vars[key] = strconv.FormatBool(n)
	case float64:
		vars[key] = strconv.FormatFloat(n, 'f', -1, 64)
	}
}
