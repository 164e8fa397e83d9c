package render

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/berthd/berth/records"
	"github.com/berthd/berth/render/dialect"
	"github.com/berthd/berth/store"
)

// Bind adapts a parsed template and one snapshot into a Source.
func Bind(t *dialect.Template, in dialect.Input) Source { return bound{t: t, in: in} }

type bound struct {
	t  *dialect.Template
	in dialect.Input
}

func (b bound) Render(w io.Writer) error { return b.t.Execute(w, b.in) }
func (b bound) Count() int               { return b.t.Count(b.in) }

// Fixture is a context file for rendering without a store (berth render
// --context): either a JSON list of containers in docker-gen's
// RuntimeContainer shape, or a JSON object mapping keys to values. A value
// that is a JSON string is the key's value as is; any other JSON value is
// stored as its compact JSON text (so records can be written inline).
type Fixture struct {
	Containers []records.Container // set for a list
	KVs        []store.KV          // set for an object, sorted by key
}

// ReadFixture reads a context file.
func ReadFixture(file string) (Fixture, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return Fixture{}, err
	}
	f, err := parseFixture(data)
	if err != nil {
		return Fixture{}, fmt.Errorf("context %s: %w", file, err)
	}
	return f, nil
}

func parseFixture(data []byte) (Fixture, error) {
	switch t := bytes.TrimSpace(data); {
	case len(t) > 0 && t[0] == '[':
		var f Fixture
		if err := strictJSON(t, &f.Containers); err != nil {
			return Fixture{}, fmt.Errorf("containers: %w", err)
		}
		if f.Containers == nil {
			f.Containers = []records.Container{}
		}
		return f, nil
	case len(t) > 0 && t[0] == '{':
		var m map[string]json.RawMessage
		if err := json.Unmarshal(t, &m); err != nil {
			return Fixture{}, err
		}
		f := Fixture{KVs: make([]store.KV, 0, len(m))}
		for k, raw := range m {
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				var buf bytes.Buffer
				if err := json.Compact(&buf, raw); err != nil {
					return Fixture{}, fmt.Errorf("key %q: %w", k, err)
				}
				s = buf.String()
			}
			f.KVs = append(f.KVs, store.KV{Key: k, Value: []byte(s)})
		}
		slices.SortFunc(f.KVs, func(a, b store.KV) int { return strings.Compare(a.Key, b.Key) })
		return f, nil
	}
	return Fixture{}, fmt.Errorf("want a JSON list of containers or an object of keys")
}

// strictJSON decodes JSON rejecting unknown fields, so that a misspelt
// container field in a fixture is an error rather than a silent zero.
func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the JSON value")
	}
	return nil
}

// Input is the fixture as a template's input: the keys under prefixes (all
// keys when prefixes is empty) and the containers.
func (f Fixture) Input(prefixes []string) dialect.Input {
	in := dialect.Input{Containers: f.Containers, KVs: []store.KV{}}
	for _, kv := range f.KVs {
		if len(prefixes) == 0 || slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(kv.Key, p) }) {
			in.KVs = append(in.KVs, kv)
		}
	}
	return in
}

// MergeKVs merges listings of several prefixes into one list sorted by key,
// each key once (prefixes may overlap).
func MergeKVs(lists ...[]store.KV) []store.KV {
	// Empty lists (a certificate source has no keys) merge to nothing.
	var one []store.KV
	nonEmpty := 0
	for _, l := range lists {
		if len(l) > 0 {
			one, nonEmpty = l, nonEmpty+1
		}
	}
	if nonEmpty <= 1 && strictlySorted(one) {
		return one // one sorted list of distinct keys (a mirror's snapshot): nothing to merge
	}
	var out []store.KV
	for _, l := range lists {
		out = append(out, l...)
	}
	slices.SortStableFunc(out, func(a, b store.KV) int { return strings.Compare(a.Key, b.Key) })
	return slices.CompactFunc(out, func(a, b store.KV) bool { return a.Key == b.Key })
}

// strictlySorted reports whether kvs is sorted by key with no key twice.
func strictlySorted(kvs []store.KV) bool {
	for i := 1; i < len(kvs); i++ {
		if kvs[i-1].Key >= kvs[i].Key {
			return false
		}
	}
	return true
}
