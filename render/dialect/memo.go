package dialect

import (
	"bytes"
	"encoding/json"
	"sync"
	"text/template/parse"

	"github.com/berthd/berth/endpoints"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/store"
)

// memo is what a Template keeps from one execution to the next so that a
// render after one change costs in proportion to the change, not to the
// store: the JSON values it decoded (by their text: a key's value at
// one revision is decoded once), the instance records it decoded (by key
// and bytes), and the directory index of the last snapshot it rendered.
//
// An execution holds the memo for its whole run; an execution that finds
// it held by another (the same template rendered concurrently) runs
// without it, decoding and scanning everything, with the same output.
// Entries the last execution did not use are dropped once they outnumber
// the used ones, so the memo stays in proportion to the snapshot.
type memo struct {
	mu sync.Mutex
	// shareValues: no function of the template can modify a decoded
	// value in place (see mutators), so executions share them instead of
	// getting copies.
	shareValues bool

	gen       uint64 // the execution now holding the memo
	values    map[valueKey]*memoValue
	usedVals  int
	instances map[string]*cachedInstance
	usedInst  int
	index     dirIndex
	// blocks holds the output of memoized range bodies (incremental.go).
	blocks     map[blockKey]*block
	usedBlocks int
	// seenKVs is the snapshot the last execution holding the memo read,
	// and seenGen its generation: the blocks that execution wrote or
	// found valid (gen == seenGen) read the same in seenKVs, so in the
	// next snapshot they are checked against the keys changed since
	// (changedKeys), not by reading their deps again.
	seenKVs []store.KV
	seenGen uint64
	// sets is the memo of the endpoint sets {{endpoints}} builds.
	sets endpoints.Builder
	// readOnly: the decoded instances go to a reader that does not modify
	// them (Template.Services), which then shares the memo's.
	readOnly bool
}

// valueKey names a decoded value: the decoder and the text decoded.
type valueKey struct {
	kind byte // 'a' any (fromJson), 'o' object (confd json), 'l' list (confd jsonArray)
	text string
}

type memoValue struct {
	v   any
	err error
	gen uint64
}

type cachedInstance struct {
	raw []byte
	in  records.Instance
	gen uint64 // the last execution that used it
}

// mutators are the functions that modify a map or list argument in place:
// sprig's set, unset and merges, confd's in-place sorts and reverse. A
// template that calls none of them cannot change a decoded value, so
// executions may share one.
var mutators = []string{
	"set", "unset", "merge", "mergeOverwrite", "mustMerge", "mustMergeOverwrite",
	"reverse", "sortByLength", "sortKVByLength",
}

// newMemo returns the memo of the parsed template set trees.
func newMemo(trees []*parse.Tree) *memo {
	calls := map[string]bool{}
	for _, t := range trees {
		if t != nil {
			walk(t.Root, func(n parse.Node) bool {
				if id, ok := n.(*parse.IdentifierNode); ok {
					calls[id.Ident] = true
				}
				return true
			})
		}
	}
	share := true
	for _, f := range mutators {
		share = share && !calls[f]
	}
	return &memo{shareValues: share}
}

// acquire returns the memo for one execution, or nil when another
// execution holds it (or there is none).
func (m *memo) acquire() *memo {
	if m == nil || !m.mu.TryLock() {
		return nil
	}
	m.gen++
	m.usedVals, m.usedInst, m.usedBlocks = 0, 0, 0
	if m.values == nil {
		m.values = map[valueKey]*memoValue{}
		m.instances = map[string]*cachedInstance{}
		m.blocks = map[blockKey]*block{}
	}
	return m
}

// release ends an execution's hold. After a successful one, entries it
// did not use are dropped when they outnumber the used ones (keys gone,
// values replaced).
func (m *memo) release(ok bool) {
	if m == nil {
		return
	}
	if ok && len(m.values) > 2*m.usedVals+1024 {
		for k, e := range m.values {
			if e.gen != m.gen {
				delete(m.values, k)
			}
		}
	}
	if ok && len(m.instances) > 2*m.usedInst+1024 {
		for k, e := range m.instances {
			if e.gen != m.gen {
				delete(m.instances, k)
			}
		}
	}
	if ok && len(m.blocks) > 2*m.usedBlocks+1024 {
		for k, e := range m.blocks {
			if e.gen != m.gen {
				delete(m.blocks, k)
			}
		}
	}
	m.mu.Unlock()
}

// decode returns text decoded by decode, from the memo when an earlier
// execution decoded the same text. A nil memo decodes.
func (m *memo) decode(kind byte, text string, decode func(string) (any, error)) (any, error) {
	if m == nil {
		return decode(text)
	}
	k := valueKey{kind, text}
	e, ok := m.values[k]
	if !ok {
		v, err := decode(text)
		e = &memoValue{v: v, err: err}
		m.values[k] = e
	}
	if e.gen != m.gen {
		e.gen = m.gen
		m.usedVals++
	}
	if m.shareValues {
		return e.v, e.err
	}
	return copyJSON(e.v), e.err
}

// copyJSON returns a deep copy of a value decoded by encoding/json into
// any: maps and lists are copied, the rest is immutable.
func copyJSON(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = copyJSON(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = copyJSON(e)
		}
		return out
	}
	return v
}

// fromJSON is sprig's mustFromJson, memoized.
func (m *memo) fromJSON(s string) (any, error) {
	return m.decode('a', s, decodeJSON)
}

// jsonObject is confd's json, memoized.
func (m *memo) jsonObject(s string) (map[string]any, error) {
	v, err := m.decode('o', s, func(s string) (any, error) { return jsonObject(s) })
	if err != nil {
		return nil, err
	}
	return v.(map[string]any), nil
}

// jsonArray is confd's jsonArray, memoized.
func (m *memo) jsonArray(s string) ([]any, error) {
	v, err := m.decode('l', s, func(s string) (any, error) { return jsonArray(s) })
	if err != nil {
		return nil, err
	}
	return v.([]any), nil
}

// instance decodes an instance record, from the memo when the key's bytes
// did not change. Each execution gets its own copy of the record's maps and
// slices, so nothing a template does to them reaches another execution.
func (m *memo) instance(kv store.KV) (records.Instance, error) {
	if m != nil {
		if e, ok := m.instances[kv.Key]; ok && bytes.Equal(e.raw, kv.Value) {
			if e.gen != m.gen {
				e.gen = m.gen
				m.usedInst++
			}
			if m.readOnly {
				return e.in, nil
			}
			return e.in.Copy(), nil
		}
	}
	var in records.Instance
	if err := json.Unmarshal(kv.Value, &in); err != nil {
		return in, err
	}
	if m != nil {
		m.instances[kv.Key] = &cachedInstance{raw: kv.Value, in: in.Copy(), gen: m.gen}
		m.usedInst++
	}
	return in, nil
}
