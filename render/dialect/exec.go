package dialect

import (
	"cmp"
	"encoding/json"
	"fmt"
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
	tmpl *template.Template
	data any
	env  map[string]string
	kv   *kvStore
}

func newExec(t *Template, in Input) (*execution, error) {
	x := &execution{in: &in, env: in.Env}
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
// kvs. A record that is not valid JSON fails the render: rendering without
// it would drop a backend silently.
func decodeRecords(prefix string, kvs []store.KV, containersOnly bool) (*snapshotRecords, error) {
	r := &snapshotRecords{services: map[string][]records.Instance{}, hosts: map[string]records.Host{}}
	sp, cp, hp := records.ServicesPrefix(prefix), records.ContainersPrefix(prefix), records.HostsPrefix(prefix)
	for _, kv := range kvs {
		var err error
		switch {
		case !containersOnly && strings.HasPrefix(kv.Key, sp):
			var in records.Instance
			if err = json.Unmarshal(kv.Value, &in); err == nil {
				svc := in.Service
				if svc == "" {
					svc, _, _ = strings.Cut(kv.Key[len(sp):], "/")
				}
				r.services[svc] = append(r.services[svc], in)
			}
		case strings.HasPrefix(kv.Key, cp):
			var c records.Container
			if err = json.Unmarshal(kv.Value, &c); err == nil {
				r.containers = append(r.containers, c)
			}
		case !containersOnly && strings.HasPrefix(kv.Key, hp):
			var h records.Host
			if err = json.Unmarshal(kv.Value, &h); err == nil {
				if h.Name == "" {
					h.Name = kv.Key[len(hp):]
				}
				r.hosts[h.Name] = h
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
