package explain

import (
	"bytes"
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"time"

	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/store"
)

// Dump is the exact data one template receives when it renders a
// snapshot (berth render --context-dump).
type Dump struct {
	Template string         `json:"template"`
	Dialect  dialect.Name   `json:"dialect"`
	Revision store.Revision `json:"revision"`
	// Dot is the template's dot (dialect.Template.Context) with the field
	// names the template uses (.Services, .ID, .Env ...): for the native
	// dialect Services, Containers, Hosts, Env and Revision; for
	// docker-gen the container list; null for confd, which reads Keys.
	Dot any `json:"dot"`
	// Keys is every key the template reads, as a fixture berth render
	// --context takes back: a value that is compact JSON (a record) is
	// inline, any other value a JSON string.
	Keys map[string]json.RawMessage `json:"keys"`
}

// NewDump is the dump of t (named name) rendering in.
func NewDump(name string, t *dialect.Template, in dialect.Input) (Dump, error) {
	dot, err := t.Context(in)
	if err != nil {
		return Dump{}, err
	}
	d := Dump{Template: name, Dialect: t.Dialect(), Revision: in.Revision, Dot: goNames(reflect.ValueOf(dot)), Keys: map[string]json.RawMessage{}}
	for _, kv := range in.KVs {
		d.Keys[kv.Key] = fixtureValue(kv.Value)
	}
	return d, nil
}

// fixtureValue is v as a fixture's value: inline when it is compact JSON
// of an object or a list (the fixture reader stores such a value as its
// compact text: the same bytes), else a JSON string.
func fixtureValue(v []byte) json.RawMessage {
	if len(v) > 0 && (v[0] == '{' || v[0] == '[') && json.Valid(v) {
		var buf bytes.Buffer
		if json.Compact(&buf, v) == nil && bytes.Equal(buf.Bytes(), v) {
			return json.RawMessage(v)
		}
	}
	b, _ := json.Marshal(string(v))
	return b
}

var (
	timeType = reflect.TypeFor[time.Time]()
	textType = reflect.TypeFor[encoding.TextMarshaler]()
)

// goNames is v as JSON values with Go's field names (what a template
// writes after the dot), not the JSON tags records are stored with.
func goNames(v reflect.Value) any {
	if !v.IsValid() {
		return nil
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return goNames(v.Elem())
	}
	if v.Type() == timeType {
		return v.Interface().(time.Time).Format(time.RFC3339Nano)
	}
	switch v.Kind() {
	case reflect.Struct:
		m := map[string]any{}
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if f.IsExported() {
				m[f.Name] = goNames(v.Field(i))
			}
		}
		return m
	case reflect.Map:
		if v.IsNil() {
			return nil
		}
		m := make(map[string]any, v.Len())
		for it := v.MapRange(); it.Next(); {
			m[fmt.Sprint(it.Key().Interface())] = goNames(it.Value())
		}
		return m
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			return nil
		}
		l := make([]any, v.Len())
		for i := range l {
			l[i] = goNames(v.Index(i))
		}
		return l
	}
	if v.Type().Implements(textType) {
		b, err := v.Interface().(encoding.TextMarshaler).MarshalText()
		if err == nil {
			return string(b)
		}
	}
	return v.Interface()
}
