package dialect

import (
	"fmt"
	"maps"
	"os"
	"text/template"
	"time"

	"github.com/berthd/berth/certs"
	"github.com/berthd/berth/endpoints"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/store"
)

// nativeContext is the data of a native template.
type nativeContext struct {
	// Services maps a service name to its instances, sorted by host, id.
	Services map[string][]records.Instance
	// Containers are the container records, sorted by host, id.
	Containers []records.Container
	// Hosts maps a host name to its record.
	Hosts map[string]records.Host
	// Env is the environment berth runs with (or Input.Env).
	Env map[string]string
	// Revision is the store revision of the snapshot.
	Revision store.Revision
	// Certs is the certificate store's content (never nil: empty when
	// the template has no certificate source).
	Certs *certs.Set
}

func nativeData(prefix string, x *execution) (any, error) {
	r, err := decodeRecords(prefix, x.kv.kvs, false, x.memo)
	if err != nil {
		return nil, err
	}
	c := &nativeContext{Services: r.services, Containers: r.containers, Hosts: r.hosts, Env: x.env, Revision: x.in.Revision, Certs: x.in.Certs}
	if c.Certs == nil {
		c.Certs = certs.NewSet("", nil)
	}
	if x.in.Containers != nil {
		c.Containers = x.in.Containers
	}
	return c, nil
}

// Services decodes in's instance records as a native template sees them
// (.Services), through the template's record cache: what {{endpoints
// .Services}} builds from, without executing the template. The instances'
// maps and slices may be the cache's: the caller must not modify them.
func (t *Template) Services(in Input) (map[string][]records.Instance, error) {
	// The memo's instance cache when no execution holds it; released
	// without pruning, since this is not an execution.
	m := t.memo.acquire()
	if m != nil {
		m.readOnly = true // the instances are the memo's: not to be modified
	}
	r, err := decodeRecords(t.opts.Prefix, in.KVs, false, m)
	if m != nil {
		m.readOnly = false
	}
	m.release(false)
	if err != nil {
		return nil, err
	}
	return r.services, nil
}

// nativeFuncs is sprig (hermetic unless allowed), berth's escaping and
// checking functions (escapeFuncs), plus the key helpers of
// consul-template and confd over the snapshot.
func nativeFuncs(opts Options) *funcSet {
	fs := &funcSet{parse: sprigFuncs(), denied: map[string]string{}}
	maps.Copy(fs.parse, escapeFuncs())
	if !opts.AllowNondeterministic {
		for _, name := range nondeterministic {
			delete(fs.parse, name)
			fs.denied[name] = "its result changes on every render, so the output would never settle; set allow_nondeterministic = true to use it"
		}
		hermeticDates(fs.parse)
	}
	fs.bind = func(x *execution) template.FuncMap {
		m := template.FuncMap{
			// consul-template
			"key":          kvFunc(x, func(s *kvStore) any { return s.key }),
			"keyOrDefault": kvFunc(x, func(s *kvStore) any { return s.keyOrDefault }),
			"keyExists":    kvFunc(x, func(s *kvStore) any { return s.keyExists }),
			"ls":           kvFunc(x, func(s *kvStore) any { return s.ctLs }),
			"safeLs":       kvFunc(x, func(s *kvStore) any { return s.safeLs }),
			"tree":         kvFunc(x, func(s *kvStore) any { return s.tree }),
			"safeTree":     kvFunc(x, func(s *kvStore) any { return s.safeTree }),
			// confd (memkv); sprig's own get (a dict lookup) stays.
			"getv":   kvFunc(x, func(s *kvStore) any { return s.getv }),
			"getvs":  kvFunc(x, func(s *kvStore) any { return s.getvs }),
			"gets":   kvFunc(x, func(s *kvStore) any { return s.gets }),
			"lsdir":  kvFunc(x, func(s *kvStore) any { return s.lsdir }),
			"exists": kvFunc(x, func(s *kvStore) any { return s.exists }),
			// berth: report without failing the render.
			"warn": warnFunc(x),
			// berth: live endpoints (package endpoints).
			"endpoints": endpointsFunc(x),
			// berth: HTTPS per host from the certificate store (package certs).
			"httpsHosts": httpsHostsFunc(x),
		}
		// sprig's JSON decoding, memoized across executions.
		m["fromJson"], m["mustFromJson"] = unbound, unbound
		if x != nil {
			m["fromJson"] = func(s string) any { v, _ := x.memo.fromJSON(s); return v }
			m["mustFromJson"] = x.memo.fromJSON
		}
		bindEnv(m, x)
		// consul-template's catalog functions (catalog.go).
		catalogFuncs(m, x)
		return m
	}
	return fs
}

// warnFunc is {{warn "msg"}}: the message goes to Input.Warn (once per
// render) and the template output gets nothing.
func warnFunc(x *execution) func(string) string {
	if x == nil {
		return func(string) string { return "" }
	}
	seen := map[string]bool{}
	return func(msg string) string {
		if x.in.Warn != nil && !seen[msg] {
			seen[msg] = true
			x.in.Warn(msg)
		}
		return ""
	}
}

// endpointsFunc is {{endpoints .Services}}: endpoints.Build over the
// instances (service by service in name order), each record it leaves out
// reported with warn; the set also goes to Input.Endpoints.
func endpointsFunc(x *execution) func(map[string][]records.Instance) endpoints.Set {
	warn := warnFunc(x)
	return func(services map[string][]records.Instance) endpoints.Set {
		var opts []endpoints.Option
		if x != nil {
			opts = append(opts, endpoints.AtRevision(x.in.Revision))
			opts = append(opts, x.in.EndpointOptions...)
		}
		build := endpoints.Build
		if x != nil && x.memo != nil {
			build = x.memo.sets.Build // the instances validated by earlier executions
		}
		set, errs := build(endpoints.Instances(services), opts...)
		for _, err := range errs {
			warn(err.Error())
		}
		if x != nil && x.in.Endpoints != nil {
			x.in.Endpoints(set)
		}
		return set
	}
}

// kvFunc returns the function pick selects on the execution's key/value
// view, or a stub when there is no execution (the parse-time function map
// only needs the names).
func kvFunc(x *execution, pick func(*kvStore) any) any {
	if x == nil {
		return unbound
	}
	return pick(x.kv)
}

// bindEnv points sprig's env and expandenv at the execution's environment.
func bindEnv(m template.FuncMap, x *execution) {
	if x == nil {
		m["env"], m["expandenv"] = unbound, unbound
		return
	}
	m["env"] = x.getenv
	m["expandenv"] = func(s string) string { return os.Expand(s, x.getenv) }
}

// hermeticDates replaces sprig's date formatting functions, which use the
// current time for an argument that is not a time, with versions that fail
// instead; durationRound likewise for a time argument (time since then).
func hermeticDates(m template.FuncMap) {
	check := func(fn string, v any) error {
		switch v.(type) {
		case time.Time, *time.Time, int, int32, int64:
			return nil
		}
		return fmt.Errorf("%T is not a time; defaulting to the current time needs allow_nondeterministic = true (%s)", v, fn)
	}
	date := m["date"].(func(string, any) string)
	m["date"] = func(format string, d any) (string, error) {
		if err := check("date", d); err != nil {
			return "", err
		}
		return date(format, d), nil
	}
	dateInZone := m["dateInZone"].(func(string, any, string) string)
	inZone := func(format string, d any, zone string) (string, error) {
		if err := check("dateInZone", d); err != nil {
			return "", err
		}
		return dateInZone(format, d, zone), nil
	}
	m["dateInZone"], m["date_in_zone"] = inZone, inZone
	m["htmlDate"] = func(d any) (string, error) { return inZone("2006-01-02", d, "Local") }
	m["htmlDateInZone"] = func(d any, zone string) (string, error) { return inZone("2006-01-02", d, zone) }
	durationRound := m["durationRound"].(func(any) string)
	m["durationRound"] = func(d any) (string, error) {
		if _, isTime := d.(time.Time); isTime {
			return "", fmt.Errorf("the time since a date needs allow_nondeterministic = true")
		}
		return durationRound(d), nil
	}
}
