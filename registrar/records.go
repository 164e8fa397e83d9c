package registrar

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/berthd/berth/records"
	"github.com/berthd/berth/runtime"
)

// Labels and environment variables the registrar reads (design.md §4):
// berth's own labels first, then registrator's SERVICE_* and
// nginx-proxy's VIRTUAL_* conventions.
const (
	labelService = "berth.service"
	labelIgnore  = "berth.ignore"
	labelWeight  = "berth.weight"
	labelCompose = "com.docker.compose.service"
)

// desired is what one container should have in the store: its keys and
// values. Problems found on the way (a bad VIRTUAL_PORT) are reported in
// warnings; they never keep the container out.
type desired struct {
	kvs      map[string][]byte
	warnings []string
}

// recordsFor computes the records of one container on host. A container
// that is not running, is ignored, or has a health check that has not
// passed, has none.
func recordsFor(prefix, host string, c runtime.Container, state records.State) desired {
	d := desired{kvs: map[string][]byte{}}
	env := records.EnvMap(c.Env)
	if !c.Running() || truthy(c.Labels[labelIgnore]) || truthy(env["SERVICE_IGNORE"]) {
		return d
	}
	if c.Health == runtime.HealthStarting || c.Health == runtime.HealthUnhealthy {
		return d // health-gated: published only while healthy
	}
	declared := map[string]string{}
	for k, v := range env {
		if strings.HasPrefix(k, "VIRTUAL_") || strings.HasPrefix(k, "SERVICE_") {
			declared[k] = v
		}
	}
	ports := instancePorts(c, env)
	main, warn := mainPort(c, env)
	if warn != "" {
		d.warnings = append(d.warnings, warn)
		delete(declared, "VIRTUAL_HOST") // registered, but without the vhost it cannot serve
	}
	weight := 1
	if w, err := strconv.Atoi(cmp.Or(c.Labels[labelWeight], env["SERVICE_WEIGHT"])); err == nil && w >= 0 {
		weight = w
	}
	base := records.Instance{
		ID: c.ID, Name: c.Name, Host: host, IP: c.IP, Port: main, Ports: ports,
		Image: c.Image, Labels: c.Labels, Env: declared, Tags: splitList(env["SERVICE_TAGS"]),
		Health: records.Health(c.Health), State: state, Weight: weight, StartedAt: c.Started,
	}
	put := func(in records.Instance) {
		b, _ := json.Marshal(in)
		d.kvs[records.ServiceKey(prefix, in.Service, host, c.ID)] = b
	}
	base.Service = serviceName(c, env)
	put(base)
	// SERVICE_<port>_NAME publishes that port as an instance of another
	// service (registrator's per-port names).
	for _, p := range ports {
		if p.Name == "" || p.Name == base.Service {
			continue
		}
		in := base
		in.Service, in.Port = p.Name, p.Port
		put(in)
	}
	b, _ := json.Marshal(records.FromRuntime(c))
	d.kvs[records.ContainerKey(prefix, host, c.ID)] = b
	return d
}

// serviceName picks the service, in order: label berth.service, env
// SERVICE_NAME, label com.docker.compose.service, the image's repository
// base name. The result is a valid key segment.
func serviceName(c runtime.Container, env map[string]string) string {
	name := cmp.Or(c.Labels[labelService], env["SERVICE_NAME"], c.Labels[labelCompose])
	if name == "" {
		repo := records.ParseImage(c.Image).Repository
		if i := strings.IndexByte(repo, '@'); i >= 0 {
			repo = repo[:i]
		}
		name = path.Base(repo)
	}
	name = strings.Map(func(r rune) rune {
		if r == '/' || r <= ' ' {
			return '-'
		}
		return r
	}, name)
	if !records.ValidSegment(name) {
		return "unnamed"
	}
	return name
}

// instancePorts lists the container's ports with their service names.
func instancePorts(c runtime.Container, env map[string]string) []records.Port {
	out := make([]records.Port, 0, len(c.Ports))
	for _, p := range c.Ports {
		out = append(out, records.Port{
			Port: int(p.Port), Proto: p.Proto, HostPort: int(p.HostPort),
			Name: env[fmt.Sprintf("SERVICE_%d_NAME", p.Port)],
		})
	}
	return out
}

// mainPort is the port a proxy should use: VIRTUAL_PORT when it is a valid
// port (else a warning), otherwise the only exposed port. With several
// exposed ports or none, a virtual host gets 80 (nginx-proxy's rule); a
// plain service its lowest exposed port, or 0.
func mainPort(c runtime.Container, env map[string]string) (int, string) {
	var warn string
	if v, ok := env["VIRTUAL_PORT"]; ok {
		p, err := strconv.Atoi(strings.TrimSpace(v))
		if err == nil && p > 0 && p < 65536 {
			return p, ""
		}
		warn = fmt.Sprintf("container %s: VIRTUAL_PORT=%q is not a port (1-65535); registered without its VIRTUAL_HOST", c.Name, v)
	}
	if len(c.Ports) != 1 && strings.TrimSpace(env["VIRTUAL_HOST"]) != "" {
		return 80, warn
	}
	ports := slices.Clone(c.Ports)
	slices.SortFunc(ports, func(a, b runtime.Port) int { return cmp.Compare(a.Port, b.Port) })
	if len(ports) > 0 {
		return int(ports[0].Port), warn
	}
	return 0, warn
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func truthy(s string) bool {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	return err == nil && b
}

// sortedKeys is for deterministic transactions and logs.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
