package dialect

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"iter"
	"os"
	"slices"
	"strings"
	"text/template"

	"github.com/berthd/berth/records"
	"github.com/berthd/berth/store"
)

// execution is the state of one Execute call: the template clone whose
// functions are bound to this input, and the data it renders.
type execution struct {
	in   *Input
	memo *memo // nil when another execution holds the template's
	tmpl *template.Template
	data any
	env  map[string]string
	kv   *kvStore
	// out is the buffer the template writes to; memoized blocks copy
	// their output from it and write cached output to it.
	out    *bytes.Buffer
	frames []*frame // the memoized blocks being executed, innermost last
	// pending are the catalog lookups without an answer yet (catalog.go).
	pending []string
}

// newExec prepares an execution; the caller calls x.end once it is over.
func newExec(t *Template, in Input) (_ *execution, err error) {
	x := &execution{in: &in, env: in.Env, memo: t.memo.acquire()}
	defer func() {
		if err != nil {
			x.end(false)
		}
	}()
	if x.env == nil {
		x.env = environ()
	}
	strip := ""
	if t.opts.Dialect == Confd {
		strip = t.opts.Prefix
	}
	x.kv = newKVStore(in.KVs, strip)
	if x.memo != nil {
		x.kv.ix = &x.memo.index
		if x.memo.seenKVs != nil && t.blocks > 0 {
			x.kv.changed, x.kv.delta = changedKeys(x.memo.seenKVs, x.kv.kvs)
			x.kv.since = x.memo.seenGen
		}
		x.memo.seenKVs, x.memo.seenGen = x.kv.kvs, x.memo.gen
	}
	switch t.opts.Dialect {
	case Native:
		x.data, err = nativeData(t.opts.Prefix, x)
	case DockerGen:
		x.data, err = dockerGenData(t.opts.Prefix, x)
	}
	if err != nil {
		return nil, &Error{File: t.paths[t.main], Msg: err.Error(), Err: err}
	}
	tmpl, err := t.tmpl.Clone()
	if err != nil {
		return nil, fmt.Errorf("clone template %s: %w", t.paths[t.main], err)
	}
	x.tmpl = tmpl.Funcs(t.fs.bind(x))
	if t.blocks > 0 {
		x.tmpl.Funcs(memoFuncs(x))
	}
	return x, nil
}

// end releases what the execution held; ok says it succeeded.
func (x *execution) end(ok bool) { x.memo.release(ok) }

// getenv returns an environment variable of the input's environment.
func (x *execution) getenv(key string) string { return x.env[key] }

// environ returns the process environment as a map.
func environ() map[string]string {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	return env
}

// iterKVs yields the KVs of lists in turn.
func iterKVs(lists [][]store.KV) iter.Seq2[int, store.KV] {
	return func(yield func(int, store.KV) bool) {
		n := 0
		for _, l := range lists {
			for _, kv := range l {
				if !yield(n, kv) {
					return
				}
				n++
			}
		}
	}
}

// snapshotRecords are the records of a snapshot, decoded from their keys.
type snapshotRecords struct {
	services   map[string][]records.Instance
	containers []records.Container
	hosts      map[string]records.Host
}

// decodeRecords decodes the instance, container and host records among
// kvs; other keys are left alone. The key names a record's service, host
// and id (the schema is the truth); the record's own fields are filled in
// from it when missing. A record that is not valid JSON fails the render:
// rendering without it would drop a backend silently.
func decodeRecords(prefix string, kvs []store.KV, containersOnly bool, m *memo) (*snapshotRecords, error) {
	r := &snapshotRecords{services: map[string][]records.Instance{}, hosts: map[string]records.Host{}}
	// Record keys lie in three directories of the sorted snapshot (in key
	// order: containers, hosts, services); other keys are not looked at.
	snap := &kvStore{kvs: kvs}
	dirs := [][]store.KV{snap.span(records.ContainersPrefix(prefix))}
	if !containersOnly {
		services := snap.span(records.ServicesPrefix(prefix))
		dirs = append(dirs, snap.span(records.HostsPrefix(prefix)), services)
		// Size each service's list first: appending ~250-byte records one
		// by one would copy each list several times over.
		sizes := map[string]int{}
		for _, kv := range services {
			if k, err := records.ParseKey(prefix, kv.Key); err == nil && k.Kind == records.KindService {
				sizes[k.Service]++
			}
		}
		for svc, n := range sizes {
			r.services[svc] = make([]records.Instance, 0, n)
		}
	}
	for _, kv := range iterKVs(dirs) {
		k, err := records.ParseKey(prefix, kv.Key)
		if err != nil || (containersOnly && k.Kind != records.KindContainer) {
			continue
		}
		switch k.Kind {
		case records.KindService:
			var in records.Instance
			if in, err = m.instance(kv); err == nil {
				in.Service = cmp.Or(in.Service, k.Service)
				in.Host = cmp.Or(in.Host, k.Host)
				in.ID = cmp.Or(in.ID, k.ID)
				r.services[k.Service] = append(r.services[k.Service], in)
			}
		case records.KindContainer:
			var c records.Container
			if err = json.Unmarshal(kv.Value, &c); err == nil {
				c.ID = cmp.Or(c.ID, k.ID)
				r.containers = append(r.containers, c)
			}
		case records.KindHost:
			var h records.Host
			if err = json.Unmarshal(kv.Value, &h); err == nil {
				h.Name = cmp.Or(h.Name, k.Host)
				r.hosts[k.Host] = h
			}
		}
		if err != nil {
			return nil, fmt.Errorf("record %s: %w", kv.Key, err)
		}
	}
	for _, list := range r.services {
		slices.SortStableFunc(list, func(a, b records.Instance) int {
			return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.ID, b.ID))
		})
	}
	return r, nil
}
