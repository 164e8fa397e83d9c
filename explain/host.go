package explain

import (
	"strings"
	"time"

	"github.com/berthd/berth/records"
	"github.com/berthd/berth/store"
)

// Server is one instance behind an upstream, and when its record last
// changed (the store revision of its record: stores keep no times).
type Server struct {
	Container string         `json:"container"`
	Name      string         `json:"name,omitempty"`
	Service   string         `json:"service"`
	Host      string         `json:"host"`
	Address   string         `json:"address"`
	Weight    int            `json:"weight"`
	Draining  bool           `json:"draining,omitempty"`
	Key       string         `json:"key"`
	Revision  store.Revision `json:"revision"`
	Started   time.Time      `json:"started,omitzero"`
}

// Upstream is one upstream serving a host name (one per path).
type Upstream struct {
	Name    string   `json:"name"`
	Path    string   `json:"path"`
	Proto   string   `json:"proto"`
	Servers []Server `json:"servers"`
}

// Block is where a template's current output serves a host name: the
// lines naming the host (its server block) and its upstreams.
type Block struct {
	Template string `json:"template"`
	Dest     string `json:"dest,omitempty"`
	Live     string `json:"live,omitempty"`
	// Lines are the output's lines naming the host (its server block)
	// or one of its upstreams, in file order.
	Lines      []Line `json:"lines,omitempty"`
	Unreadable string `json:"unreadable,omitempty"`
}

// HostReport explains one host name.
type HostReport struct {
	Name      string     `json:"name"`
	Upstreams []Upstream `json:"upstreams"`
	Blocks    []Block    `json:"templates,omitempty"`
	// LeftOut are the records that ask for the host and are not served,
	// and why (an invalid name, a protocol conflict).
	LeftOut []string `json:"left_out,omitempty"`
}

func (e *Explainer) host(s snapshot, name string) *HostReport {
	want := name
	if !strings.HasPrefix(want, "~") {
		want = strings.ToLower(want)
	}
	r := &HostReport{Name: want, Upstreams: []Upstream{}}
	set, errs := s.build()
	for _, u := range set.Upstreams {
		if u.Host != want {
			continue
		}
		up := Upstream{Name: u.Name, Path: u.Path, Proto: u.Proto, Servers: []Server{}}
		for _, sv := range u.Servers {
			id, _, _ := strings.Cut(sv.ID, "/")
			srv := Server{Container: id, Address: sv.Addr.String(), Weight: sv.Weight, Draining: sv.Draining}
			for _, in := range s.instances {
				if in.In.ID == id && in.In.Address() == srv.Address {
					srv.Name, srv.Service, srv.Host, srv.Key, srv.Revision, srv.Started = in.In.Name, in.In.Service, in.In.Host, in.KV.Key, in.KV.ModRevision, in.In.StartedAt
					break
				}
			}
			up.Servers = append(up.Servers, srv)
		}
		r.Upstreams = append(r.Upstreams, up)
	}
	for _, err := range errs {
		if containsToken(err.Error(), want) {
			r.LeftOut = append(r.LeftOut, err.Error())
		}
	}
	for _, in := range s.instances {
		for _, fe := range in.In.Invalid {
			if fe.Field == "VIRTUAL_HOST" && containsToken(strings.ToLower(fe.Value), want) {
				r.LeftOut = append(r.LeftOut, "container "+in.In.Name+" ("+in.In.ID+"): "+fe.String())
			}
		}
	}
	if len(r.Upstreams) == 0 && len(r.LeftOut) == 0 {
		return nil
	}
	cache := map[string]output{}
	for _, t := range e.templates {
		if !reads(t.Config, records.ServicesPrefix(e.prefix)) && !reads(t.Config, records.Root(e.prefix)) {
			continue
		}
		b := Block{Template: t.Config.Name, Dest: t.Config.Spec.Dest, Live: t.Config.Live}
		o := e.output(t.Config, cache)
		if o.err != nil {
			b.Unreadable = o.err.Error()
		}
		names := []string{want}
		for _, u := range r.Upstreams {
			names = append(names, u.Name)
		}
		b.Lines = o.find(names...)
		r.Blocks = append(r.Blocks, b)
	}
	return r
}

// Instance is one instance of a service, and what keeps it out of a
// proxy.
type Instance struct {
	Container string         `json:"container"`
	Name      string         `json:"name,omitempty"`
	Host      string         `json:"host"`
	Address   string         `json:"address,omitempty"`
	State     records.State  `json:"state"`
	Health    records.Health `json:"health,omitempty"`
	Key       string         `json:"key"`
	Revision  store.Revision `json:"revision"`
	Reasons   []Reason       `json:"reasons,omitempty"`
}

// ServiceReport explains one service.
type ServiceReport struct {
	Name      string     `json:"name"`
	Instances []Instance `json:"instances"`
}

func (e *Explainer) service(s snapshot, name string) *ServiceReport {
	var r *ServiceReport
	for _, in := range s.instances {
		if in.In.Service != name {
			continue
		}
		if r == nil {
			r = &ServiceReport{Name: name}
		}
		r.Instances = append(r.Instances, Instance{
			Container: in.In.ID, Name: in.In.Name, Host: in.In.Host, Address: in.In.Address(),
			State: in.In.State, Health: in.In.Health, Key: in.KV.Key, Revision: in.KV.ModRevision,
			Reasons: instanceReasons(in.In),
		})
	}
	return r
}
