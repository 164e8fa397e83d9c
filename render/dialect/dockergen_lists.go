package dialect

import (
	"cmp"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berthd/berth/records"
)

// listValue returns entries (or what it points to) as an array or slice.
func listValue(fn string, entries any) (reflect.Value, error) {
	v := reflect.ValueOf(entries)
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if k := v.Kind(); k != reflect.Array && k != reflect.Slice {
		return reflect.Value{}, fmt.Errorf("must pass an array or slice to '%s'; received %v; kind %v", fn, entries, k)
	}
	return v, nil
}

// deepGet follows a dot-separated field path ("Env.VIRTUAL_HOST",
// "Addresses.0.Port") through structs, maps and slices. It returns nil
// when the path does not lead to a value.
func deepGet(item any, path string) any {
	var parts []string
	if path != "" {
		parts = strings.Split(strings.TrimPrefix(path, "."), ".")
	}
	v := reflect.ValueOf(item)
	for _, p := range parts {
		if !v.IsValid() {
			return nil
		}
		if v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		switch v.Kind() {
		case reflect.Struct:
			v = v.FieldByName(p)
		case reflect.Map:
			if v.Type().Key().Kind() != reflect.String {
				return nil
			}
			v = v.MapIndex(reflect.ValueOf(p).Convert(v.Type().Key()))
		case reflect.Slice, reflect.Array:
			i, err := strconv.ParseUint(p, 10, 64)
			if err != nil || i >= uint64(v.Len()) {
				return nil
			}
			v = v.Index(int(min(i, math.MaxInt)))
		default:
			return nil
		}
	}
	if !v.IsValid() || !v.CanInterface() {
		return nil
	}
	return v.Interface()
}

// filter returns the entries whose value at key passes test.
func filter(fn string, entries any, key string, test func(any) bool) ([]any, error) {
	list, err := listValue(fn, entries)
	if err != nil {
		return nil, err
	}
	out := make([]any, 0)
	for i := range list.Len() {
		e := list.Index(i).Interface()
		if test(deepGet(e, key)) {
			out = append(out, e)
		}
	}
	return out, nil
}

// where selects the entries whose value at key equals cmp.
func where(entries any, key string, cmp any) ([]any, error) {
	return filter("where", entries, key, func(v any) bool { return reflect.DeepEqual(v, cmp) })
}

// whereNot selects the entries whose value at key differs from cmp.
func whereNot(entries any, key string, cmp any) ([]any, error) {
	return filter("whereNot", entries, key, func(v any) bool { return !reflect.DeepEqual(v, cmp) })
}

// whereExist selects the entries that have a value at key.
func whereExist(entries any, key string) ([]any, error) {
	return filter("whereExist", entries, key, func(v any) bool { return v != nil })
}

// whereNotExist selects the entries that have no value at key.
func whereNotExist(entries any, key string) ([]any, error) {
	return filter("whereNotExist", entries, key, func(v any) bool { return v == nil })
}

// splitValue splits the string value at a key; ok is false for no value.
func splitValue(fn string, v any, sep string) (items []string, ok bool, err error) {
	if v == nil {
		return nil, false, nil
	}
	s, isString := v.(string)
	if !isString {
		return nil, false, fmt.Errorf("%s: value %v is %T, not a string", fn, v, v)
	}
	return strings.Split(s, sep), true, nil
}

// whereSplit selects the entries whose value at key, split by sep, holds
// any of the values in cmp, or all of them.
func whereSplit(fn string, entries any, key, sep string, cmp []string, all bool) ([]any, error) {
	var failed error
	out, err := filter(fn, entries, key, func(v any) bool {
		items, ok, err := splitValue(fn, v, sep)
		if err != nil {
			failed = err
		}
		if !ok {
			return false
		}
		n := len(intersect(cmp, items))
		if all {
			return n == len(cmp)
		}
		return n > 0
	})
	if err == nil {
		err = failed
	}
	return out, err
}

// whereAny selects the entries whose value at key, split by sep, holds any
// of cmp.
func whereAny(entries any, key, sep string, cmp []string) ([]any, error) {
	return whereSplit("whereAny", entries, key, sep, cmp, false)
}

// whereAll selects the entries whose value at key, split by sep, holds all
// of cmp.
func whereAll(entries any, key, sep string, cmp []string) ([]any, error) {
	return whereSplit("whereAll", entries, key, sep, cmp, true)
}

// container returns a list entry as a container.
func container(fn string, e any) (*records.Container, error) {
	switch c := e.(type) {
	case *records.Container:
		return c, nil
	case records.Container:
		return &c, nil
	}
	return nil, fmt.Errorf("must pass an array or slice of containers to '%s'; received %v", fn, e)
}

// whereLabel selects the containers whose label passes test.
func whereLabel(fn string, containers any, label string, test func(value string, ok bool) bool) ([]*records.Container, error) {
	list, err := listValue(fn, containers)
	if err != nil {
		return nil, err
	}
	out := make([]*records.Container, 0)
	for i := range list.Len() {
		c, err := container(fn, list.Index(i).Interface())
		if err != nil {
			return nil, err
		}
		if v, ok := c.Labels[label]; test(v, ok) {
			out = append(out, c)
		}
	}
	return out, nil
}

// whereLabelExists selects the containers that have label.
func whereLabelExists(containers any, label string) ([]*records.Container, error) {
	return whereLabel("whereLabelExists", containers, label, func(_ string, ok bool) bool { return ok })
}

// whereLabelDoesNotExist selects the containers that lack label.
func whereLabelDoesNotExist(containers any, label string) ([]*records.Container, error) {
	return whereLabel("whereLabelDoesNotExist", containers, label, func(_ string, ok bool) bool { return !ok })
}

// whereLabelValueMatches selects the containers whose label matches the
// regular expression pattern.
func whereLabelValueMatches(containers any, label, pattern string) ([]*records.Container, error) {
	rx, err := regexp.Compile(pattern)
	if err != nil {
		return nil, err
	}
	return whereLabel("whereLabelValueMatches", containers, label, func(v string, ok bool) bool { return ok && rx.MatchString(v) })
}

// group puts each entry into the groups named by the strings that value
// returns for it (none: the entry is left out).
func group(fn string, entries any, value func(e any) ([]string, error)) (map[string][]any, error) {
	list, err := listValue(fn, entries)
	if err != nil {
		return nil, err
	}
	groups := map[string][]any{}
	for i := range list.Len() {
		e := list.Index(i).Interface()
		names, err := value(e)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			groups[n] = append(groups[n], e)
		}
	}
	return groups, nil
}

// stringAt returns the string value at key of e: none when there is no
// value, def when def is set.
func stringAt(fn string, e any, key string, def *string) ([]string, error) {
	v := deepGet(e, key)
	if v == nil {
		if def != nil {
			return []string{*def}, nil
		}
		return nil, nil
	}
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("%s: value of %q is %T, not a string", fn, key, v)
	}
	return []string{s}, nil
}

// groupBy groups entries by their string value at key, leaving out those
// without one.
func groupBy(entries any, key string) (map[string][]any, error) {
	return group("groupBy", entries, func(e any) ([]string, error) { return stringAt("groupBy", e, key, nil) })
}

// groupByWithDefault is groupBy with entries lacking a value grouped under
// def.
func groupByWithDefault(entries any, key, def string) (map[string][]any, error) {
	return group("groupByWithDefault", entries, func(e any) ([]string, error) { return stringAt("groupByWithDefault", e, key, &def) })
}

// groupByKeys returns the group names of groupBy, sorted.
func groupByKeys(entries any, key string) ([]string, error) {
	groups, err := group("groupByKeys", entries, func(e any) ([]string, error) { return stringAt("groupByKeys", e, key, nil) })
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(groups))
	for k := range groups {
		out = append(out, k)
	}
	slices.Sort(out)
	return out, nil
}

// groupByMulti groups entries under every part of their value at key split
// by sep.
func groupByMulti(entries any, key, sep string) (map[string][]any, error) {
	return group("groupByMulti", entries, func(e any) ([]string, error) {
		items, _, err := splitValue("groupByMulti", deepGet(e, key), sep)
		return items, err
	})
}

// labelOf returns the value of a container's label: none when missing,
// def when def is set.
func labelOf(fn string, e any, label string, def *string) ([]string, error) {
	c, err := container(fn, e)
	if err != nil {
		return nil, err
	}
	if v, ok := c.Labels[label]; ok {
		return []string{v}, nil
	}
	if def != nil {
		return []string{*def}, nil
	}
	return nil, nil
}

// groupByLabel groups containers by the value of label.
func groupByLabel(entries any, label string) (map[string][]any, error) {
	return group("groupByLabel", entries, func(e any) ([]string, error) { return labelOf("groupByLabel", e, label, nil) })
}

// groupByLabelWithDefault groups containers by the value of label, those
// without it under def.
func groupByLabelWithDefault(entries any, label, def string) (map[string][]any, error) {
	return group("groupByLabelWithDefault", entries, func(e any) ([]string, error) {
		return labelOf("groupByLabelWithDefault", e, label, &def)
	})
}

// sortStringsAsc returns values sorted in increasing order.
func sortStringsAsc(values []string) []string {
	out := slices.Clone(values)
	slices.Sort(out)
	return out
}

// sortStringsDesc returns values sorted in decreasing order.
func sortStringsDesc(values []string) []string {
	out := sortStringsAsc(values)
	slices.Reverse(out)
	return out
}

// sortKey is the text an entry sorts by: its value at key as a string,
// integer, boolean or time; "" for anything else or no value.
func sortKey(e any, key string) string {
	switch v := deepGet(e, key).(type) {
	case string:
		return v
	case int:
		return strconv.FormatInt(int64(v), 10)
	case int32:
		return strconv.FormatInt(int64(v), 10)
	case int64:
		return strconv.FormatInt(v, 10)
	case bool:
		return strconv.FormatBool(v)
	case time.Time:
		return v.String()
	}
	return ""
}

// sortObjects returns the entries stably sorted by sortKey (as text, so
// "10" sorts before "9", as in docker-gen).
func sortObjects(fn string, entries any, key string, desc bool) ([]any, error) {
	list, err := listValue(fn, entries)
	if err != nil {
		return nil, err
	}
	type item struct {
		e   any
		key string
	}
	items := make([]item, list.Len())
	for i := range items {
		e := list.Index(i).Interface()
		items[i] = item{e, sortKey(e, key)}
	}
	slices.SortStableFunc(items, func(a, b item) int {
		if desc {
			return cmp.Compare(b.key, a.key)
		}
		return cmp.Compare(a.key, b.key)
	})
	out := make([]any, len(items))
	for i, it := range items {
		out[i] = it.e
	}
	return out, nil
}

// sortObjectsByKeysAsc sorts entries by their value at key, increasing.
func sortObjectsByKeysAsc(entries any, key string) ([]any, error) {
	return sortObjects("sortObjectsByKeysAsc", entries, key, false)
}

// sortObjectsByKeysDesc sorts entries by their value at key, decreasing.
func sortObjectsByKeysDesc(entries any, key string) ([]any, error) {
	return sortObjects("sortObjectsByKeysDesc", entries, key, true)
}

// mapKeys returns the keys of a map, sorted by their printed form (nil
// for nil).
func mapKeys(m any) ([]any, error) {
	if m == nil {
		return nil, nil
	}
	v := reflect.ValueOf(m)
	if v.Kind() != reflect.Map {
		return nil, fmt.Errorf("cannot call keys on a non-map value: %v", m)
	}
	ks := v.MapKeys()
	slices.SortFunc(ks, func(a, b reflect.Value) int { return cmp.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
	out := make([]any, len(ks))
	for i, k := range ks {
		out[i] = k.Interface()
	}
	return out, nil
}

// hasMapKey reports whether m is a map holding key: docker-gen's contains.
func hasMapKey(m, key any) bool {
	v := reflect.ValueOf(m)
	if m == nil || v.Kind() != reflect.Map {
		return false
	}
	for _, k := range v.MapKeys() {
		if k.Interface() == key {
			return true
		}
	}
	return false
}

// intersect returns the strings in both lists, sorted and without
// duplicates.
func intersect(a, b []string) []string {
	out := []string{}
	for _, s := range a {
		if slices.Contains(b, s) && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// lineStart matches the start of every line.
var lineStart = regexp.MustCompile(`(?m)^`)

// comment prefixes every line of source with delim.
func comment(delim, source string) string {
	return lineStart.ReplaceAllLiteralString(source, delim)
}
