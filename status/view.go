package status

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/berthd/berth/acme"
	"github.com/berthd/berth/cluster"
	"github.com/berthd/berth/deploy"
	"github.com/berthd/berth/records"
	"github.com/berthd/berth/render"
	"github.com/berthd/berth/runner"
	"github.com/berthd/berth/store"
)

// Input is what a View is built from; the daemon gathers it (see
// daemon/status.go). Build only reads it.
type Input struct {
	Now      time.Time
	Host     string // this daemon's host name in the key schema
	Version  string
	Prefix   string         // the key prefix (records.DefaultPrefix if "")
	Records  []store.KV     // every key under records.Root(Prefix)
	Revision store.Revision // the store revision Records are current to
	Synced   bool           // Records are a full listing (false: still loading)
	Health   Health
	// Templates are the runner's statuses (nil: it was busy, and the last
	// answer is gone too); Renders what the daemon saw of each template's
	// attempts, by name.
	Templates []runner.TemplateStatus
	Renders   map[string]Render
	Store     Store
	// Members are the store's cluster members (an etcd store only);
	// MembersErr why they could not be listed.
	Members    []cluster.MemberInfo
	MembersErr error
	// Deploys are the deploy history of each service that has one, oldest
	// first (nil without a runtime).
	Deploys map[string][]deploy.Revision
	// ACME is the certificates and the rate-limit budget (nil: ACME off).
	ACME *acme.Status
}

// View is the status page's data, and /api/v1/status. Every list is
// sorted, so that two views of the same state are equal.
type View struct {
	Generated  time.Time      `json:"generated"`
	Host       string         `json:"host"`
	Version    string         `json:"version,omitempty"`
	Revision   store.Revision `json:"revision"`
	Synced     bool           `json:"synced"`
	Health     Health         `json:"health"`
	Services   []Service      `json:"services"`
	Containers []Container    `json:"containers"`
	Hosts      []Host         `json:"hosts"`
	Templates  []Template     `json:"templates"`
	Store      Store          `json:"store"`
	Cluster    *Cluster       `json:"cluster,omitempty"`
	Deploys    []Deploy       `json:"deploys,omitempty"`
	ACME       *acme.Status   `json:"acme,omitempty"`
	// Problems are store values that could not be read (not JSON, a key
	// outside the schema): each is left out of the lists above.
	Problems []string `json:"problems,omitempty"`
}

// Health is the daemon's health check (/healthz).
type Health struct {
	Status string  `json:"status"` // ok, degraded or unhealthy
	Checks []Check `json:"checks"`
}

// Check is one finding of the health check.
type Check struct {
	Name     string `json:"name"`
	OK       bool   `json:"ok"`
	Degraded bool   `json:"degraded,omitempty"`
	Detail   string `json:"detail,omitempty"`
}

// Instance states (Instance.State). Running and healthy instances are
// routable; the others say why in Instance.Reasons.
const (
	StateRunning     = "running"     // serving, no health check
	StateHealthy     = "healthy"     // serving, health check passing
	StateStarting    = "starting"    // health check not passed yet
	StateUnhealthy   = "unhealthy"   // health check failing
	StateDraining    = "draining"    // stopped: no new connections, leaving after the drain
	StateQuarantined = "quarantined" // its change makes a template's check fail
)

// Service is one service and its instances.
type Service struct {
	Name      string     `json:"name"`
	Routable  int        `json:"routable"` // instances in a routable state
	Instances []Instance `json:"instances"`
}

// Instance is one instance record, as a proxy would see it.
type Instance struct {
	Key         string               `json:"key"`
	ModRevision store.Revision       `json:"mod_revision"`
	ID          string               `json:"id"`
	Name        string               `json:"name"`
	Host        string               `json:"host"`
	Address     string               `json:"address,omitempty"` // ip:port
	IP          string               `json:"ip,omitempty"`
	Port        int                  `json:"port,omitempty"`
	VirtualHost string               `json:"virtual_host,omitempty"`
	Image       string               `json:"image,omitempty"`
	Health      string               `json:"health"`
	State       string               `json:"state"`
	Routable    bool                 `json:"routable"`
	Reasons     []string             `json:"reasons,omitempty"` // why not routable, or what was left out
	Invalid     []records.FieldError `json:"invalid,omitempty"`
	StartedAt   time.Time            `json:"started_at,omitzero"`
}

// Container is one container record and the records it produced.
type Container struct {
	Key         string            `json:"key"`
	ModRevision store.Revision    `json:"mod_revision"`
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Host        string            `json:"host"`
	Image       string            `json:"image"`
	Running     bool              `json:"running"`
	Health      string            `json:"health,omitempty"`
	IP          string            `json:"ip,omitempty"`
	Ports       []string          `json:"ports,omitempty"` // "8080/tcp", "80/tcp->8080"
	Labels      map[string]string `json:"labels,omitempty"`
	// Env holds the routing variables only (VIRTUAL_*, SERVICE_*, as the
	// instance records do): the rest of a container's environment may
	// hold secrets, and the page does not show it.
	Env map[string]string `json:"env,omitempty"`
	// Records are the keys of its instance records, with their states.
	Records []RecordRef `json:"records,omitempty"`
	// CatalogRefused is why the Consul agent refused its service ("":
	// it did not).
	CatalogRefused string `json:"catalog_refused,omitempty"`
}

// RecordRef is one instance record of a container.
type RecordRef struct {
	Key     string `json:"key"`
	Service string `json:"service"`
	State   string `json:"state"`
}

// Host is one host record (a running registrar).
type Host struct {
	Name      string    `json:"name"`
	Version   string    `json:"version,omitempty"`
	StartedAt time.Time `json:"started_at,omitzero"`
	Self      bool      `json:"self,omitempty"`
}

// Render is what the daemon saw of one template's render attempts
// (runner observations), kept by the daemon between views.
type Render struct {
	At       time.Time      `json:"at,omitzero"`       // the last attempt
	Revision store.Revision `json:"revision"`          // of the snapshot it rendered
	Outcome  string         `json:"outcome,omitempty"` // changed, unchanged, refused or failed
	Error    string         `json:"error,omitempty"`
	Phases   Phases         `json:"phases"`
	// Check and Reload are the last check and reload commands seen.
	Check  *Command `json:"check,omitempty"`
	Reload *Command `json:"reload,omitempty"`
	// Diff is the unified diff of the last change, from the version of the
	// destination seen before it; DiffNote says why there is none.
	Diff      string    `json:"diff,omitempty"`
	DiffNote  string    `json:"diff_note,omitempty"`
	ChangedAt time.Time `json:"changed_at,omitzero"`
}

// Phases is the time one render attempt spent in each phase. A cycle
// renders every template due at once: Cycle is the whole cycle's time.
type Phases struct {
	Cycle          time.Duration `json:"cycle_ns"`           // execute, compare, write, check, reload, for all templates in the cycle
	Commands       time.Duration `json:"commands_ns"`        // this template's check and reload commands
	GenerationWait time.Duration `json:"generation_wait_ns"` // waiting for the previous proxy generation to exit
	Paced          time.Duration `json:"paced_ns"`           // held back by reload pacing before the attempt
	QuarantineRuns int           `json:"quarantine_checks"`  // checks run to find quarantined records
}

// Command is one run of a check or reload command.
type Command struct {
	At     time.Time `json:"at"`
	Line   string    `json:"line,omitempty"`
	OK     bool      `json:"ok"`
	Error  string    `json:"error,omitempty"`
	Output string    `json:"output,omitempty"` // what it printed, when it failed
}

// Template is one template's state.
type Template struct {
	Name         string         `json:"name"`
	Dest         string         `json:"dest"`
	Synced       bool           `json:"synced"`
	Revision     store.Revision `json:"revision"` // store revision of the last good render
	LastRender   time.Time      `json:"last_render,omitzero"`
	LastChange   time.Time      `json:"last_change,omitzero"`
	Renders      int            `json:"renders"`
	Failures     int            `json:"failures"`
	FailingSince time.Time      `json:"failing_since,omitzero"`
	Error        string         `json:"error,omitempty"`
	Quarantined  []Quarantined  `json:"quarantined,omitempty"`
	Last         *Render        `json:"last,omitempty"`
}

// Quarantined is one store key a template leaves out of its output,
// because with its change the template's check fails (runner.QuarantinedKey).
type Quarantined struct {
	Key       string    `json:"key"`
	Service   string    `json:"service,omitempty"`
	Container string    `json:"container,omitempty"`
	Deleted   bool      `json:"deleted,omitempty"` // the change is the key's deletion
	Reason    string    `json:"reason"`
	Since     time.Time `json:"since"`
}

// Store is the store the daemon uses, and how it is doing.
type Store struct {
	Backend  string `json:"backend"`  // embedded, etcd, consul, file, env, memory
	Endpoint string `json:"endpoint"` // its URL (credentials removed)
	Healthy  bool   `json:"healthy"`
	Detail   string `json:"detail,omitempty"`
	// WatchLag is the mean time from a write by this daemon to its watch
	// delivering it, over WatchLagSamples writes.
	WatchLag        time.Duration `json:"watch_lag_ns"`
	WatchLagSamples uint64        `json:"watch_lag_samples"`
	Watches         []Watch       `json:"watches,omitempty"`
	// Catalog is this host's registrations in the Consul catalog
	// ([registry] kind "consul-catalog"; nil: none).
	Catalog *Catalog `json:"catalog,omitempty"`
}

// Catalog is how this host's registrations in the Consul catalog are
// doing (registrar/consulcatalog's Sink).
type Catalog struct {
	Agent        string    `json:"agent"`
	Services     int       `json:"services"`
	Failing      bool      `json:"failing,omitempty"` // the agent does not answer: services stay as they are, retrying
	FailingSince time.Time `json:"failing_since,omitzero"`
	Error        string    `json:"error,omitempty"`
	// Refused are the containers with a service the agent refused (an
	// ACL permission, a definition it rejects), by id.
	Refused []Refusal `json:"refused,omitempty"`
}

// Refusal is one container whose service the Consul agent refused.
type Refusal struct {
	ID     string `json:"id"`
	Name   string `json:"name,omitempty"`
	Reason string `json:"reason"`
}

// Watch is one watched prefix.
type Watch struct {
	Prefix    string         `json:"prefix"`
	Synced    bool           `json:"synced"`
	Revision  store.Revision `json:"revision"`
	LastEvent time.Time      `json:"last_event,omitzero"`
	Error     string         `json:"error,omitempty"`
}

// Cluster is the store's cluster members.
type Cluster struct {
	Members []cluster.MemberInfo `json:"members"`
	Error   string               `json:"error,omitempty"`
}

// Deploy is one service's deploy history, newest first (at most
// MaxRevisions).
type Deploy struct {
	Service   string     `json:"service"`
	Revisions []Revision `json:"revisions"`
}

// Revision is one deploy of a service (deploy.Revision without its spec,
// whose environment may hold secrets).
type Revision struct {
	Number     int       `json:"revision"`
	Image      string    `json:"image"`
	Digest     string    `json:"digest,omitempty"`
	RollbackTo int       `json:"rollback_to,omitempty"`
	Host       string    `json:"host,omitempty"`
	Started    time.Time `json:"started"`
	Serving    time.Time `json:"serving,omitzero"`
	Finished   time.Time `json:"finished,omitzero"`
	Outcome    string    `json:"outcome"`
	Reason     string    `json:"reason,omitempty"`
	Containers []string  `json:"containers,omitempty"`
}

// MaxRevisions bounds the revisions a Deploy lists.
const MaxRevisions = 10

// Build makes the View of in.
func Build(in Input) View {
	prefix := cmp.Or(in.Prefix, records.DefaultPrefix)
	v := View{Generated: in.Now.UTC(), Host: in.Host, Version: in.Version, Revision: in.Revision, Synced: in.Synced,
		Health: in.Health, Store: in.Store,
		Services: []Service{}, Containers: []Container{}, Hosts: []Host{}, Templates: []Template{}}
	if v.Health.Checks == nil {
		v.Health.Checks = []Check{}
	}

	// Quarantined keys, by key: which templates hold them out, and why.
	quarantined := map[string][]string{}
	for _, t := range in.Templates {
		for _, q := range t.Quarantined {
			quarantined[q.Key] = append(quarantined[q.Key], fmt.Sprintf("quarantined from template %s: %s", t.Name, q.Reason))
		}
	}

	services := map[string]*Service{}
	byContainer := map[string][]RecordRef{}
	deployDir := records.Root(prefix) + "deployments/"
	for _, kv := range in.Records {
		if strings.HasPrefix(kv.Key, deployDir) {
			continue // deploy history: read through package deploy
		}
		k, err := records.ParseKey(prefix, kv.Key)
		if err != nil {
			v.Problems = append(v.Problems, err.Error())
			continue
		}
		switch k.Kind {
		case records.KindService:
			inst, err := instanceOf(kv, k, quarantined[kv.Key])
			if err != nil {
				v.Problems = append(v.Problems, err.Error())
				continue
			}
			s := services[k.Service]
			if s == nil {
				s = &Service{Name: k.Service}
				services[k.Service] = s
			}
			s.Instances = append(s.Instances, inst)
			if inst.Routable {
				s.Routable++
			}
			byContainer[k.Host+"/"+k.ID] = append(byContainer[k.Host+"/"+k.ID], RecordRef{Key: kv.Key, Service: k.Service, State: inst.State})
		case records.KindContainer:
			c, err := containerOf(kv, k)
			if err != nil {
				v.Problems = append(v.Problems, err.Error())
				continue
			}
			v.Containers = append(v.Containers, c)
		case records.KindHost:
			var h records.Host
			if err := json.Unmarshal(kv.Value, &h); err != nil {
				v.Problems = append(v.Problems, fmt.Sprintf("host record %s: %v", kv.Key, err))
				continue
			}
			v.Hosts = append(v.Hosts, Host{Name: k.Host, Version: h.Version, StartedAt: h.StartedAt, Self: k.Host == in.Host})
		}
	}
	for _, name := range sortedKeys(services) {
		s := services[name]
		slices.SortFunc(s.Instances, func(a, b Instance) int { return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.ID, b.ID)) })
		v.Services = append(v.Services, *s)
	}
	for i := range v.Containers {
		c := &v.Containers[i]
		c.Records = byContainer[c.Host+"/"+c.ID]
		slices.SortFunc(c.Records, func(a, b RecordRef) int { return cmp.Compare(a.Key, b.Key) })
	}
	slices.SortFunc(v.Containers, func(a, b Container) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Host, b.Host), cmp.Compare(a.ID, b.ID))
	})
	v.Store.Catalog = catalogRefusals(in.Store.Catalog, in.Host, v.Containers)

	for _, t := range in.Templates {
		tv := Template{Name: t.Name, Dest: t.Dest, Synced: t.Synced, Revision: t.Revision, LastRender: t.LastRender,
			LastChange: t.LastChange, Renders: t.Renders, Failures: t.Failures, FailingSince: t.FailingSince}
		for _, q := range t.Quarantined {
			tv.Quarantined = append(tv.Quarantined, Quarantined{Key: q.Key, Service: q.Service, Container: q.Container, Deleted: q.Deleted, Reason: q.Reason, Since: q.Since})
		}
		if t.LastError != nil {
			tv.Error = t.LastError.Error()
		}
		if r, ok := in.Renders[t.Name]; ok {
			tv.Last = &r
		}
		v.Templates = append(v.Templates, tv)
	}
	slices.SortFunc(v.Templates, func(a, b Template) int { return cmp.Compare(a.Name, b.Name) })

	if in.Members != nil || in.MembersErr != nil {
		c := &Cluster{Members: slices.Clone(in.Members)}
		if in.MembersErr != nil {
			c.Error = in.MembersErr.Error()
		}
		slices.SortFunc(c.Members, func(a, b cluster.MemberInfo) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID)) })
		v.Cluster = c
	}
	for _, svc := range sortedKeys(in.Deploys) {
		hist := in.Deploys[svc]
		d := Deploy{Service: svc, Revisions: []Revision{}}
		for i := len(hist) - 1; i >= 0 && len(d.Revisions) < MaxRevisions; i-- {
			r := hist[i]
			d.Revisions = append(d.Revisions, Revision{Number: r.Number, Image: r.Image, Digest: r.Digest, RollbackTo: r.RollbackTo,
				Host: r.Host, Started: r.Started, Serving: r.Serving, Finished: r.Finished, Outcome: string(r.Outcome), Reason: r.Reason,
				Containers: r.Containers})
		}
		v.Deploys = append(v.Deploys, d)
	}
	v.ACME = in.ACME
	return v
}

// instanceOf reads one instance record and works out its state.
func instanceOf(kv store.KV, k records.Key, quarantine []string) (Instance, error) {
	var r records.Instance
	if err := json.Unmarshal(kv.Value, &r); err != nil {
		return Instance{}, fmt.Errorf("instance record %s: %w", kv.Key, err)
	}
	in := Instance{Key: kv.Key, ModRevision: kv.ModRevision, ID: k.ID, Name: r.Name, Host: k.Host,
		Address: r.Address(), IP: r.IP, Port: r.Port, VirtualHost: r.Env["VIRTUAL_HOST"], Image: r.Image,
		Health: string(cmp.Or(r.Health, records.HealthNone)), Invalid: r.Invalid, StartedAt: r.StartedAt}
	switch {
	case r.Health == records.HealthHealthy:
		in.State = StateHealthy
	default:
		in.State = StateRunning
	}
	switch r.Health {
	case records.HealthUnhealthy:
		in.State = StateUnhealthy
		in.Reasons = append(in.Reasons, "unhealthy: its health check fails")
	case records.HealthStarting:
		in.State = StateStarting
		in.Reasons = append(in.Reasons, "starting: its health check has not passed yet")
	}
	if r.State == records.StateDraining {
		in.State = StateDraining
		in.Reasons = append(in.Reasons, "draining: stopped, takes no new connections, leaves after the drain period")
	} else if r.State != records.StateRunning {
		in.Reasons = append(in.Reasons, fmt.Sprintf("state %q is neither running nor draining", records.Truncate(string(r.State))))
	}
	if len(quarantine) > 0 {
		in.State = StateQuarantined
		in.Reasons = append(in.Reasons, quarantine...)
	}
	in.Routable = (in.State == StateRunning || in.State == StateHealthy) && r.State == records.StateRunning
	if in.Address == "" {
		in.Routable = false
		in.Reasons = append(in.Reasons, "no address: the container has no IP or no port, so no proxy can reach it")
	}
	for _, fe := range r.Invalid {
		in.Reasons = append(in.Reasons, "left out of the record: "+fe.String())
	}
	return in, nil
}

// routingEnv says whether a container variable is routing metadata (the
// variables instance records keep).
func routingEnv(k string) bool {
	return strings.HasPrefix(k, "VIRTUAL_") || strings.HasPrefix(k, "SERVICE_")
}

// containerOf reads one container record.
func containerOf(kv store.KV, k records.Key) (Container, error) {
	var r records.Container
	if err := json.Unmarshal(kv.Value, &r); err != nil {
		return Container{}, fmt.Errorf("container record %s: %w", kv.Key, err)
	}
	c := Container{Key: kv.Key, ModRevision: kv.ModRevision, ID: k.ID, Name: strings.TrimPrefix(r.Name, "/"), Host: k.Host,
		Image: r.Image.String(), Running: r.State.Running, Health: r.State.Health.Status, IP: r.IP, Labels: r.Labels}
	if c.IP == "" {
		for _, n := range r.Networks {
			if n.IP != "" {
				c.IP = n.IP
				break
			}
		}
	}
	for _, a := range r.Addresses {
		p := a.Port + "/" + a.Proto
		if a.HostPort != "" {
			p += "->" + a.HostPort
		}
		c.Ports = append(c.Ports, p)
	}
	for key, val := range r.Env {
		if routingEnv(key) {
			if c.Env == nil {
				c.Env = map[string]string{}
			}
			c.Env[key] = val
		}
	}
	return c, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Outcome names a render attempt's result as the metrics do: changed,
// unchanged, refused (a guard) or failed.
func Outcome(res render.Result) string {
	switch {
	case errors.Is(res.Err, render.ErrRefused):
		return "refused"
	case res.Err != nil:
		return "failed"
	case res.Changed:
		return "changed"
	}
	return "unchanged"
}

// catalogRefusals is c with its refusals sorted and named from the
// container records of host, and marks those containers (nil: nil).
func catalogRefusals(c *Catalog, host string, cs []Container) *Catalog {
	if c == nil {
		return nil
	}
	out := *c
	out.Refused = slices.Clone(c.Refused)
	for i := range out.Refused {
		r := &out.Refused[i]
		for j := range cs {
			if cs[j].Host == host && cs[j].ID == r.ID {
				cs[j].CatalogRefused = r.Reason
				r.Name = cmp.Or(r.Name, cs[j].Name)
			}
		}
	}
	slices.SortFunc(out.Refused, func(a, b Refusal) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID)) })
	return &out
}
