package explain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/berthd/berth/config"
	"github.com/berthd/berth/endpoints"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/store"
)

// Kind is what a query names.
type Kind string

// Kinds of query. KindAuto detects which (container first, then service,
// then host name).
const (
	KindAuto      Kind = ""
	KindContainer Kind = "container"
	KindHost      Kind = "host"
	KindService   Kind = "service"
)

// ErrNotFound is returned when nothing the query names is known.
var ErrNotFound = errors.New("not found")

// Lister lists a runtime's containers; *api.Client and every
// runtime.Runtime implement it.
type Lister interface {
	List(ctx context.Context) ([]runtime.Container, error)
}

// TemplateState is one template of the daemon: its configuration and
// what it last did (from runner.TemplateStatus), as the daemon's API
// serves it (GET /v1/templates).
type TemplateState struct {
	Config      config.Template         `json:"config"`
	Revision    store.Revision          `json:"revision,omitempty"` // of the last successful render
	LastRender  time.Time               `json:"last_render,omitzero"`
	LastChange  time.Time               `json:"last_change,omitzero"`
	Error       string                  `json:"error,omitempty"` // of the last attempt
	Quarantined []runner.QuarantinedKey `json:"quarantined,omitempty"`
}

// States joins templates with the runner's status of each (by name).
func States(ts []config.Template, sts []runner.TemplateStatus) []TemplateState {
	out := make([]TemplateState, 0, len(ts))
	for _, t := range ts {
		s := TemplateState{Config: t}
		if i := slices.IndexFunc(sts, func(st runner.TemplateStatus) bool { return st.Name == t.Name }); i >= 0 {
			st := sts[i]
			s.Revision, s.LastRender, s.LastChange, s.Quarantined = st.Revision, st.LastRender, st.LastChange, st.Quarantined
			if st.LastError != nil {
				s.Error = st.LastError.Error()
			}
		}
		out = append(out, s)
	}
	return out
}

// Explainer explains queries against one store.
type Explainer struct {
	st        store.Store
	prefix    string
	rt        Lister
	templates []TemplateState
	refused   map[string]string // container id → why the Consul agent refused its service
	readFile  func(string) ([]byte, error)
}

// Option configures New.
type Option func(*Explainer)

// WithPrefix sets the records' key prefix (default records.DefaultPrefix).
func WithPrefix(p string) Option { return func(e *Explainer) { e.prefix = p } }

// WithRuntime sets where containers without records are looked up
// (stopped, unhealthy, ignored); without it only records are known.
func WithRuntime(l Lister) Option { return func(e *Explainer) { e.rt = l } }

// WithTemplates sets the templates whose output is checked.
func WithTemplates(ts []TemplateState) Option {
	return func(e *Explainer) { e.templates = ts }
}

// WithCatalogRefused sets the containers (by id) whose Consul catalog
// service the agent refused, and why (the daemon's, GET
// /v1/catalog/refused): each is reported as ReasonCatalogRefused.
func WithCatalogRefused(m map[string]string) Option { return func(e *Explainer) { e.refused = m } }

// New returns an Explainer reading st.
func New(st store.Store, opts ...Option) *Explainer {
	e := &Explainer{st: st, prefix: records.DefaultPrefix, readFile: os.ReadFile}
	for _, o := range opts {
		o(e)
	}
	return e
}

// Report is the answer to one query. Exactly one of Container, Host and
// Service is set, as Kind says.
type Report struct {
	Query     string           `json:"query"`
	Kind      Kind             `json:"kind"`
	Revision  store.Revision   `json:"revision"` // of the store snapshot read
	Container *ContainerReport `json:"container,omitempty"`
	Host      *HostReport      `json:"host,omitempty"`
	Service   *ServiceReport   `json:"service,omitempty"`
	// Notes are what could not be looked at (no runtime, no templates).
	Notes []string `json:"notes,omitempty"`
}

// snapshot is the decoded records of one List.
type snapshot struct {
	rev        store.Revision
	instances  []instanceKV // sorted by key
	containers []containerKV
}

type instanceKV struct {
	Key records.Key
	KV  store.KV
	In  records.Instance
}

type containerKV struct {
	Key records.Key
	KV  store.KV
	C   records.Container
}

func (e *Explainer) read(ctx context.Context) (snapshot, error) {
	kvs, rev, err := e.st.List(ctx, records.Root(e.prefix))
	if err != nil {
		return snapshot{}, fmt.Errorf("list %s: %w", records.Root(e.prefix), err)
	}
	s := snapshot{rev: rev}
	for _, kv := range kvs {
		k, err := records.ParseKey(e.prefix, kv.Key)
		if err != nil {
			continue
		}
		switch k.Kind {
		case records.KindService:
			var in records.Instance
			if json.Unmarshal(kv.Value, &in) != nil {
				continue
			}
			// The key is the truth, as templates see it (dialect).
			in.Service, in.Host = k.Service, k.Host
			if in.ID == "" {
				in.ID = k.ID
			}
			s.instances = append(s.instances, instanceKV{k, kv, in})
		case records.KindContainer:
			var c records.Container
			if json.Unmarshal(kv.Value, &c) != nil {
				continue
			}
			if c.ID == "" {
				c.ID = k.ID
			}
			s.containers = append(s.containers, containerKV{k, kv, c})
		}
	}
	return s, nil
}

// Explain answers query, which names a container (id, id prefix or name),
// a host name (VIRTUAL_HOST) or a service, as kind says (KindAuto:
// whichever matches first, in that order). The error wraps ErrNotFound
// when nothing matches.
func (e *Explainer) Explain(ctx context.Context, query string, kind Kind) (Report, error) {
	s, err := e.read(ctx)
	if err != nil {
		return Report{}, err
	}
	rep := Report{Query: query, Revision: s.rev}
	var cs []runtime.Container
	if e.rt != nil {
		if cs, err = e.rt.List(ctx); err != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("the runtime's containers are unknown (%v): only records are looked at", err))
			cs = nil
		}
	} else {
		rep.Notes = append(rep.Notes, "no runtime to ask: containers without records are unknown")
	}
	if e.templates == nil {
		rep.Notes = append(rep.Notes, "no templates known (not asked the daemon, no --config): outputs are not checked")
	}
	if kind == KindAuto || kind == KindContainer {
		id, rc, err := s.findContainer(query, cs)
		if err != nil {
			return Report{}, err
		}
		if id != "" {
			rep.Kind = KindContainer
			rep.Container = e.container(s, id, rc)
			return rep, nil
		}
	}
	if kind == KindAuto || kind == KindService {
		if sr := e.service(s, query); sr != nil {
			rep.Kind, rep.Service = KindService, sr
			return rep, nil
		}
	}
	if kind == KindAuto || kind == KindHost {
		if hr := e.host(s, query); hr != nil {
			rep.Kind, rep.Host = KindHost, hr
			return rep, nil
		}
	}
	what := "container, service or host name"
	if kind != KindAuto {
		what = string(kind)
	}
	return Report{}, fmt.Errorf("%w: no %s %q in the runtime or in the store under %s", ErrNotFound, what, query, records.Root(e.prefix))
}

// findContainer finds the one container query names: by id, id prefix
// or name, among the runtime's containers and the records. It returns ""
// when none matches, an error when several do.
func (s snapshot) findContainer(query string, cs []runtime.Container) (string, *runtime.Container, error) {
	q := strings.TrimPrefix(query, "/")
	if q == "" {
		return "", nil, nil
	}
	ids := map[string]bool{}
	match := func(id, name string) {
		if id == q || name == q || (len(q) >= 4 && strings.HasPrefix(id, q)) {
			ids[id] = true
		}
	}
	for _, c := range cs {
		match(c.ID, strings.TrimPrefix(c.Name, "/"))
	}
	for _, in := range s.instances {
		match(in.In.ID, in.In.Name)
	}
	for _, c := range s.containers {
		match(c.C.ID, strings.TrimPrefix(c.C.Name, "/"))
	}
	if ids[q] { // an exact id wins over prefixes
		ids = map[string]bool{q: true}
	}
	switch len(ids) {
	case 0:
		return "", nil, nil
	case 1:
	default:
		return "", nil, fmt.Errorf("%q names %d containers (%s): give more of the id", query, len(ids), strings.Join(slices.Sorted(mapsKeys(ids)), ", "))
	}
	var id string
	for k := range ids {
		id = k
	}
	for i := range cs {
		if cs[i].ID == id {
			return id, &cs[i], nil
		}
	}
	return id, nil, nil
}

func mapsKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// build is endpoints.Build over every instance record, in the order the
// shipped templates give it (service by service, then host and id).
func (s snapshot) build() (endpoints.Set, []error) {
	services := map[string][]records.Instance{}
	for _, in := range s.instances {
		services[in.In.Service] = append(services[in.In.Service], in.In)
	}
	return endpoints.Build(endpoints.Instances(services), endpoints.AtRevision(s.rev))
}

// reads reports whether template t reads key.
func reads(t config.Template, key string) bool {
	return slices.ContainsFunc(t.Prefixes, func(p string) bool { return strings.HasPrefix(key, p) })
}

// output is a template's current output file, split in lines.
type output struct {
	lines []string
	err   error
}

func (e *Explainer) output(t config.Template, cache map[string]output) output {
	if o, ok := cache[t.Name]; ok {
		return o
	}
	var o output
	switch {
	case t.Spec.Dest == "":
		o.err = errors.New("it has no destination file")
	default:
		b, err := e.readFile(t.Spec.Dest)
		if err != nil {
			o.err = err
		} else {
			o.lines = strings.Split(string(b), "\n")
		}
	}
	cache[t.Name] = o
	return o
}

// Line is one line of an output file.
type Line struct {
	N    int    `json:"n"` // 1-based
	Text string `json:"text"`
}

// maxLines bounds the lines a report quotes per template and search.
const maxLines = 5

// find returns the lines of o holding one of tokens as a whole word (not
// part of a longer name or address).
func (o output) find(tokens ...string) []Line {
	var out []Line
	for i, l := range o.lines {
		if slices.ContainsFunc(tokens, func(tok string) bool { return containsToken(l, tok) }) {
			out = append(out, Line{N: i + 1, Text: strings.TrimSpace(l)})
			if len(out) == maxLines {
				break
			}
		}
	}
	return out
}

func containsToken(line, tok string) bool {
	if tok == "" {
		return false
	}
	for off := 0; ; {
		i := strings.Index(line[off:], tok)
		if i < 0 {
			return false
		}
		i += off
		end := i + len(tok)
		if (i == 0 || !wordByte(line[i-1])) && (end == len(line) || !wordByte(line[end])) {
			return true
		}
		off = i + 1
	}
}

// wordByte reports whether b continues a name or an address.
func wordByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b == '-' || b == '.' || b == ':'
}
