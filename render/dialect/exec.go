package dialect

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"text/template"

	"github.com/berthd/berth/records"
	"github.com/berthd/berth/store"
)

// execution is the state of one Execute call: the template clone whose
// functions are bound to this input, and the data it renders.
type execution struct {
	in        *Input
	instances *instanceCache
	tmpl      *template.Template
	data      any
	env       map[string]string
	kv        *kvStore
}

func newExec(t *Template, in Input) (*execution, error) {
	x := &execution{in: &in, env: in.Env, instances: t.instances}
	if x.env == nil {
		x.env = environ()
	}
	strip := ""
	if t.opts.Dialect == Confd {
		strip = t.opts.Prefix
	}
	x.kv = newKVStore(in.KVs, strip)
	var err error
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
	return x, nil
}

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
func decodeRecords(prefix string, kvs []store.KV, containersOnly bool, cache *instanceCache) (*snapshotRecords, error) {
	r := &snapshotRecords{services: map[string][]records.Instance{}, hosts: map[string]records.Host{}}
	base := records.Root(prefix)
	if !containersOnly {
		// Size each service's list first: appending ~250-byte records one
		// by one would copy each list several times over.
		sizes := map[string]int{}
		for _, kv := range kvs {
			if k, err := records.ParseKey(prefix, kv.Key); err == nil && k.Kind == records.KindService && strings.HasPrefix(kv.Key, base) {
				sizes[k.Service]++
			}
		}
		for svc, n := range sizes {
			r.services[svc] = make([]records.Instance, 0, n)
		}
	}
	dec := cache.begin()
	defer dec.end()
	for _, kv := range kvs {
		if !strings.HasPrefix(kv.Key, base) {
			continue
		}
		k, err := records.ParseKey(prefix, kv.Key)
		if err != nil || (containersOnly && k.Kind != records.KindContainer) {
			continue
		}
		switch k.Kind {
		case records.KindService:
			var in records.Instance
			if in, err = dec.instance(kv); err == nil {
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

// instanceCache keeps the instance records earlier executions of a template
// decoded, by key: a record whose bytes did not change is not decoded
// again (at 10,000 instances decoding is most of a render). Each execution
// gets its own copies of a record's maps and slices, so nothing a template
// does to them reaches another execution. Executions of one template take
// turns on the cache; a nil cache decodes everything.
type instanceCache struct {
	mu      sync.Mutex
	gen     uint64 // the execution now using the cache
	entries map[string]*cachedInstance
}

type cachedInstance struct {
	raw []byte
	in  records.Instance
	gen uint64 // the last execution that used it
}

// instanceDecoder is one execution's use of the cache: entries it does not
// use are dropped when it ends (their keys are gone).
type instanceDecoder struct{ c *instanceCache }

func (c *instanceCache) begin() instanceDecoder {
	if c == nil {
		return instanceDecoder{}
	}
	c.mu.Lock()
	c.gen++
	if c.entries == nil {
		c.entries = map[string]*cachedInstance{}
	}
	return instanceDecoder{c}
}

func (d instanceDecoder) instance(kv store.KV) (records.Instance, error) {
	if d.c != nil {
		if e, ok := d.c.entries[kv.Key]; ok && bytes.Equal(e.raw, kv.Value) {
			e.gen = d.c.gen
			return e.in.Copy(), nil
		}
	}
	var in records.Instance
	if err := json.Unmarshal(kv.Value, &in); err != nil {
		return in, err
	}
	if d.c != nil {
		d.c.entries[kv.Key] = &cachedInstance{raw: kv.Value, in: in.Copy(), gen: d.c.gen}
	}
	return in, nil
}

func (d instanceDecoder) end() {
	if d.c == nil {
		return
	}
	for k, e := range d.c.entries {
		if e.gen != d.c.gen {
			delete(d.c.entries, k)
		}
	}
	d.c.mu.Unlock()
}
