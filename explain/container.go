package explain

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/berthd/berth/endpoints"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/registrar"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/runtime"
	"github.com/berthd/berth/store"
)

// Reason codes: why a container is not routed.
const (
	ReasonStopped            = "stopped"              // it exited
	ReasonNotRunning         = "not_running"          // created, restarting, dead, being removed
	ReasonIgnored            = "filtered_out"         // berth.ignore / SERVICE_IGNORE
	ReasonStarting           = "health_starting"      // its health check has not passed yet
	ReasonUnhealthy          = "unhealthy"            // its health check fails
	ReasonBadID              = "invalid_id"           // no key can hold its id
	ReasonNotRegistered      = "not_registered"       // running, yet no records (no registrar on its host?)
	ReasonDraining           = "draining"             // stopping: no new connections
	ReasonNoAddress          = "no_address"           // no IP: no network
	ReasonNoPort             = "no_port"              // no published or exposed port
	ReasonInvalidVirtualHost = "invalid_virtual_host" // every VIRTUAL_HOST name was left out
	ReasonNoVirtualHost      = "no_virtual_host"      // not a virtual host of the shipped proxy templates
	ReasonLeftOut            = "left_out"             // endpoints.Build left it out (protocol conflict, ...)
	ReasonQuarantined        = "quarantined"          // its change makes a template's check fail
	ReasonNoTemplate         = "no_template"          // no template reads its records
	ReasonNotInOutput        = "not_in_output"        // templates read it, no output routes it
	ReasonCatalogRefused     = "catalog_refused"      // the Consul agent refused its service (WithCatalogRefused)
)

// Reason is one reason a container is not routed.
type Reason struct {
	Code string `json:"code"`
	Text string `json:"text"`
	// For ReasonInvalidVirtualHost: what was left out, and why.
	Invalid []records.FieldError `json:"invalid,omitempty"`
}

// RuntimeState is the runtime's view of a container.
type RuntimeState struct {
	State    runtime.State  `json:"state"`
	Health   runtime.Health `json:"health,omitempty"`
	ExitCode int            `json:"exit_code,omitempty"`
	Finished time.Time      `json:"finished,omitzero"`
	Ignored  bool           `json:"ignored,omitempty"`
}

// Record is one record of a container in the store.
type Record struct {
	Key      string         `json:"key"`
	Kind     string         `json:"kind"` // service, container
	Revision store.Revision `json:"revision"`
	// For an instance record:
	Service string         `json:"service,omitempty"`
	Host    string         `json:"host,omitempty"`
	Address string         `json:"address,omitempty"` // ip:port, "" without
	State   records.State  `json:"state,omitempty"`
	Health  records.Health `json:"health,omitempty"`
	Hosts   []string       `json:"virtual_hosts,omitempty"` // VIRTUAL_HOST, as kept
}

// Use is one template that reads a container's records, and whether its
// current output routes the container.
type Use struct {
	Template string   `json:"template"`
	Dest     string   `json:"dest,omitempty"`
	Live     string   `json:"live,omitempty"`
	Keys     []string `json:"keys"` // the container's keys it reads
	// Revision is the store revision of its last successful render.
	Revision store.Revision `json:"revision,omitempty"`
	Routes   bool           `json:"routes"`
	// Found are the output lines that route it (its address; for a live
	// template, its upstream's name: the servers are pushed, not written).
	Found []Line `json:"found,omitempty"`
	// Why the output could not be looked at ("" when it was).
	Unreadable  string                  `json:"unreadable,omitempty"`
	Quarantined []runner.QuarantinedKey `json:"quarantined,omitempty"`
}

// ContainerReport explains one container.
type ContainerReport struct {
	ID      string               `json:"id"`
	Name    string               `json:"name,omitempty"`
	Runtime *RuntimeState        `json:"runtime,omitempty"` // nil: the runtime was not asked or does not know it
	Records []Record             `json:"records"`
	Invalid []records.FieldError `json:"invalid,omitempty"` // what the registrar left out of the records
	Routed  bool                 `json:"routed"`
	Reasons []Reason             `json:"reasons,omitempty"` // why not (or what keeps part of it out)
	Uses    []Use                `json:"templates,omitempty"`
	// Upstreams are the upstreams endpoints.Build puts it in, as the
	// shipped proxy templates name them.
	Upstreams []string `json:"upstreams,omitempty"`
}

func (e *Explainer) container(s snapshot, id string, rc *runtime.Container) *ContainerReport {
	r := &ContainerReport{ID: id, Records: []Record{}}
	var ins []records.Instance
	var keys []string
	for _, in := range s.instances {
		if in.In.ID != id {
			continue
		}
		ins = append(ins, in.In)
		keys = append(keys, in.KV.Key)
		r.Name = in.In.Name
		r.Records = append(r.Records, Record{
			Key: in.KV.Key, Kind: records.KindService.String(), Revision: in.KV.ModRevision,
			Service: in.In.Service, Host: in.In.Host, Address: in.In.Address(), State: in.In.State, Health: in.In.Health,
			Hosts: records.SplitHosts(in.In.Env["VIRTUAL_HOST"]),
		})
		for _, fe := range in.In.Invalid {
			if !slices.Contains(r.Invalid, fe) {
				r.Invalid = append(r.Invalid, fe)
			}
		}
	}
	for _, c := range s.containers {
		if c.C.ID == id {
			keys = append(keys, c.KV.Key)
			r.Records = append(r.Records, Record{Key: c.KV.Key, Kind: records.KindContainer.String(), Revision: c.KV.ModRevision, Host: c.Key.Host})
			if r.Name == "" {
				r.Name = strings.TrimPrefix(c.C.Name, "/")
			}
		}
	}
	if rc != nil {
		r.Name = strings.TrimPrefix(rc.Name, "/")
		r.Runtime = &RuntimeState{State: rc.State, Health: rc.Health, ExitCode: rc.ExitCode, Finished: rc.Finished}
		r.Runtime.Ignored = registrar.Skipped(*rc) == registrar.SkipIgnored
	}
	if why, ok := e.refused[id]; ok {
		r.Reasons = append(r.Reasons, Reason{Code: ReasonCatalogRefused, Text: "the Consul agent refused its catalog service (the other containers are registered): " + why})
	}
	if len(ins) == 0 {
		r.Reasons = append(r.Reasons, noRecords(rc, len(r.Records) > 0))
		r.Uses = e.uses(keys, nil, nil)
		return r
	}
	set, errs := s.build()
	for _, in := range ins {
		r.Reasons = append(r.Reasons, instanceReasons(in)...)
	}
	for _, u := range set.Upstreams {
		if slices.ContainsFunc(u.Servers, func(sv endpoints.Server) bool { return strings.HasPrefix(sv.ID, id+"/") }) {
			r.Upstreams = append(r.Upstreams, u.Name)
		}
	}
	for _, err := range errs {
		if strings.Contains(err.Error(), "("+records.Truncate(id)+")") {
			r.Reasons = append(r.Reasons, Reason{Code: ReasonLeftOut, Text: err.Error()})
		}
	}
	r.Uses = e.uses(keys, ins, r.Upstreams)
	for _, u := range r.Uses {
		r.Routed = r.Routed || u.Routes
		for _, q := range u.Quarantined {
			r.Reasons = append(r.Reasons, Reason{Code: ReasonQuarantined, Text: fmt.Sprintf("template %s left %s out of its output since %s: %s", u.Template, q.Key, q.Since.Format(time.RFC3339), q.Reason)})
		}
	}
	switch {
	case e.templates == nil:
	case len(r.Uses) == 0:
		r.Reasons = append(r.Reasons, Reason{Code: ReasonNoTemplate, Text: "no template reads its records"})
	case !r.Routed:
		r.Reasons = append(r.Reasons, Reason{Code: ReasonNotInOutput, Text: "no template's current output routes it"})
	}
	return r
}

// noRecords says why a container has no instance record: the runtime's
// state by the registrar's own rule (registrar.Skipped).
func noRecords(rc *runtime.Container, containerRecord bool) Reason {
	if rc == nil {
		if containerRecord {
			return Reason{Code: ReasonNotRegistered, Text: "it has a container record but no instance record"}
		}
		return Reason{Code: ReasonNotRegistered, Text: "it has no records in the store"}
	}
	switch registrar.Skipped(*rc) {
	case registrar.SkipNotRunning:
		if rc.State == runtime.StateExited {
			at := ""
			if !rc.Finished.IsZero() {
				at = " at " + rc.Finished.UTC().Format(time.RFC3339)
			}
			return Reason{Code: ReasonStopped, Text: fmt.Sprintf("it is stopped: it exited with code %d%s, and only running containers are registered", rc.ExitCode, at)}
		}
		return Reason{Code: ReasonNotRunning, Text: fmt.Sprintf("it is not running (state %s): only running containers are registered", rc.State)}
	case registrar.SkipIgnored:
		return Reason{Code: ReasonIgnored, Text: "it is filtered out: label berth.ignore or SERVICE_IGNORE is set"}
	case registrar.SkipStarting:
		return Reason{Code: ReasonStarting, Text: "its health check has not passed yet (starting): it is registered once healthy"}
	case registrar.SkipUnhealthy:
		return Reason{Code: ReasonUnhealthy, Text: "it is unhealthy: its health check fails, and only healthy containers are registered"}
	}
	if err := records.CheckID(rc.ID); err != nil {
		return Reason{Code: ReasonBadID, Text: fmt.Sprintf("its id cannot be a key: %v", err)}
	}
	return Reason{Code: ReasonNotRegistered, Text: "it runs, but has no records: is berth up running on its host, with this store and prefix?"}
}

// instanceReasons says what keeps one instance record out of a proxy.
func instanceReasons(in records.Instance) []Reason {
	var out []Reason
	svc := "service " + in.Service
	if in.State == records.StateDraining {
		out = append(out, Reason{Code: ReasonDraining, Text: svc + ": it is draining: it is stopping, and takes no new connections"})
	} else if in.State != records.StateRunning {
		out = append(out, Reason{Code: ReasonNotRunning, Text: fmt.Sprintf("%s: its record's state is %q", svc, in.State)})
	}
	if in.Env["VIRTUAL_HOST"] == "" {
		var bad []records.FieldError
		for _, fe := range in.Invalid {
			if fe.Field == "VIRTUAL_HOST" {
				bad = append(bad, fe)
			}
		}
		if len(bad) > 0 {
			out = append(out, Reason{Code: ReasonInvalidVirtualHost, Text: svc + ": its VIRTUAL_HOST was left out as invalid", Invalid: bad})
		} else {
			out = append(out, Reason{Code: ReasonNoVirtualHost, Text: svc + ": it has no VIRTUAL_HOST, so the shipped proxy templates do not serve it"})
		}
	}
	if in.IP == "" {
		out = append(out, Reason{Code: ReasonNoAddress, Text: svc + ": it has no IP address (no network, or the IP was invalid)"})
	}
	if in.Port == 0 {
		out = append(out, Reason{Code: ReasonNoPort, Text: svc + ": it has no published or exposed port (set VIRTUAL_PORT, or expose one)"})
	}
	return out
}

// uses lists the templates reading any of keys, and whether their output
// routes one of the instances: its address in the file, or for a live
// template its upstream's name (the servers are pushed to the proxy).
func (e *Explainer) uses(keys []string, ins []records.Instance, upstreams []string) []Use {
	var out []Use
	cache := map[string]output{}
	for _, t := range e.templates {
		u := Use{Template: t.Config.Name, Dest: t.Config.Spec.Dest, Live: t.Config.Live, Revision: t.Revision}
		for _, k := range keys {
			if reads(t.Config, k) {
				u.Keys = append(u.Keys, k)
			}
		}
		if len(u.Keys) == 0 {
			continue
		}
		for _, q := range t.Quarantined {
			if slices.Contains(u.Keys, q.Key) {
				u.Quarantined = append(u.Quarantined, q)
			}
		}
		if len(ins) > 0 {
			o := e.output(t.Config, cache)
			if o.err != nil {
				u.Unreadable = o.err.Error()
			}
			var tokens []string
			if t.Config.Live != "" {
				tokens = upstreams
			} else {
				for _, in := range ins {
					if a := in.Address(); a != "" && in.State == records.StateRunning {
						tokens = append(tokens, a)
					}
				}
			}
			for _, tok := range tokens {
				u.Found = append(u.Found, o.find(tok)...)
			}
			u.Routes = len(u.Found) > 0
		}
		out = append(out, u)
	}
	return out
}
