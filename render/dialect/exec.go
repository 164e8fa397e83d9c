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
	entries map[string]cachedInstance
}

type cachedInstance struct {
	raw []byte
	in  records.Instance
}

// instanceDecoder is one execution's use of the cache: what it decodes or
// reuses becomes the cache's content when it ends, so entries of keys that
// are gone are dropped.
type instanceDecoder struct {
	c    *instanceCache
	next map[string]cachedInstance
}

func (c *instanceCache) begin() *instanceDecoder {
	if c == nil {
		return &instanceDecoder{}
	}
	c.mu.Lock()
	return &instanceDecoder{c: c, next: make(map[string]cachedInstance, len(c.entries))}
}

func (d *instanceDecoder) instance(kv store.KV) (records.Instance, error) {
	if d.c != nil {
		if e, ok := d.c.entries[kv.Key]; ok && bytes.Equal(e.raw, kv.Value) {
			d.next[kv.Key] = e
			return e.in.Copy(), nil
		}
	}
	var in records.Instance
	if err := json.Unmarshal(kv.Value, &in); err != nil {
		return in, err
	}
	if d.c != nil {
		d.next[kv.Key] = cachedInstance{raw: kv.Value, in: in.Copy()}
	}
	return in, nil
}

func (d *instanceDecoder) end() {
	if d.c == nil {
		return
	}
	d.c.entries = d.next
	d.c.mu.Unlock()
}
