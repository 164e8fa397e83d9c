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
// values. Problems found on the way are reported in warnings (one line
// each, for the log) and, for a metadata value left out, in invalid; they
// never keep the container out.
type desired struct {
	kvs      map[string][]byte
	warnings []string
	invalid  []records.FieldError
}

// recordsFor computes the records of one container on host. A container
// that is not running, is ignored, or has a health check that has not
// passed, has none. Its metadata is validated first (see clean): what is
// invalid is left out of both records and listed on the instance records
// (Instance.Invalid) and in the warnings.
func recordsFor(prefix, host string, c runtime.Container, state records.State) desired {
	return recordsAt(prefix, host, "", "", c, state)
}

// recordsAt is recordsFor on a host reachable at advertise (an IP, or ""):
// an instance whose port is published there (or on every address) records
// advertise and the host port, which every host can reach; an unpublished
// one keeps the container's address, chosen among its networks by
// address (network is the registrar's Network).
func recordsAt(prefix, host, advertise, network string, c runtime.Container, state records.State) desired {
	d := desired{kvs: map[string][]byte{}}
	if Skipped(c) != SkipNone {
		return d // not running, ignored, or health-gated: published only while healthy
	}
	var warning string
	if c.IP, warning = address(c, network); warning != "" {
		d.warnings = append(d.warnings, warning)
	}
	if err := records.CheckID(c.ID); err != nil {
		// No key can hold it: nothing is registered.
		d.warnings = append(d.warnings, fmt.Sprintf("container %q: not registered: id %q: %v", c.Name, records.Truncate(c.ID), err))
		return d
	}
	m := clean(c)
	d.invalid = m.invalid
	for _, fe := range m.invalid {
		d.warnings = append(d.warnings, fmt.Sprintf("container %q (%.12s): %s=%q is left out: %s", records.Truncate(c.Name), c.ID, fe.Field, fe.Value, fe.Reason))
	}
	c, env := m.c, m.env
	declared := map[string]string{}
	for k, v := range env {
		// LETSENCRYPT_HOST and _EMAIL: acme-companion's, read by package acme.
		if strings.HasPrefix(k, "VIRTUAL_") || strings.HasPrefix(k, "SERVICE_") || strings.HasPrefix(k, "LETSENCRYPT_") {
			declared[k] = v
		}
	}
	ports := instancePorts(c, env)
	main := mainPort(c, env)
	base := records.Instance{
		ID: c.ID, Name: c.Name, Host: host, IP: c.IP, Port: main, Ports: ports,
		Image: c.Image, Labels: c.Labels, Env: declared, Tags: splitList(env["SERVICE_TAGS"]),
		Health: records.Health(c.Health), State: state, Weight: m.weight, StartedAt: c.Started,
		Invalid: m.invalid,
	}
	put := func(in records.Instance) {
		in.IP, in.Port = reachableAt(advertise, c, in.IP, in.Port)
		b, _ := json.Marshal(in)
		d.kvs[records.ServiceKey(prefix, in.Service, host, c.ID)] = b
	}
	base.Service = m.service
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

// metadata is a container's metadata after validation.
type metadata struct {
	c       runtime.Container // the container with its invalid metadata left out
	env     map[string]string // c's environment as a map
	service string
	weight  int
	invalid []records.FieldError
}

// clean validates a container's routing metadata with the records
// package's checks and leaves out what is invalid, field by field:
//
//   - VIRTUAL_HOST keeps its valid names (the value is rewritten only when
//     one is left out; none valid: the variable goes);
//   - VIRTUAL_PATH, VIRTUAL_PROTO, SERVICE_<port>_NAME and SERVICE_WEIGHT
//     go when invalid; VIRTUAL_PORT too, and then VIRTUAL_HOST with it (a
//     proxy would send the host to a port the container did not ask for);
//   - SERVICE_TAGS keeps its valid tags (at most records.MaxTags);
//   - the labels berth.service, com.docker.compose.service and
//     berth.weight go when invalid;
//   - the service name is the first valid one of its sources, else
//     "unnamed";
//   - an invalid name, image or IP becomes "" (no IP: no route).
//
// The container record (docker-gen's view) is made from the cleaned
// container too, so docker-gen templates never see what was left out.
func clean(c runtime.Container) metadata {
	m := metadata{c: c, env: records.EnvMap(c.Env), weight: 1}
	bad := func(field, value string, err error) {
		m.invalid = append(m.invalid, records.NewFieldError(field, value, err))
	}
	env := maps.Clone(m.env)
	if v, ok := env["VIRTUAL_HOST"]; ok {
		valid, errs := records.CheckHostList("VIRTUAL_HOST", v)
		m.invalid = append(m.invalid, errs...)
		switch {
		case len(valid) == 0 && len(errs) > 0:
			delete(env, "VIRTUAL_HOST")
		case len(errs) > 0:
			env["VIRTUAL_HOST"] = strings.Join(valid, ",")
		}
	}
	if v, ok := env["VIRTUAL_PORT"]; ok {
		if _, err := records.CheckPort(v); err != nil {
			bad("VIRTUAL_PORT", v, err)
			delete(env, "VIRTUAL_PORT")
			if h, ok := env["VIRTUAL_HOST"]; ok {
				bad("VIRTUAL_HOST", h, fmt.Errorf("VIRTUAL_PORT %q is invalid, so the host has no port to go to", records.Truncate(v)))
				delete(env, "VIRTUAL_HOST")
			}
		}
	}
	checks := []struct {
		key   string
		check func(string) error
	}{{"VIRTUAL_PATH", records.CheckPath}, {"VIRTUAL_PROTO", records.CheckProto}}
	for _, ck := range checks {
		if v, ok := env[ck.key]; ok {
			if err := ck.check(v); err != nil {
				bad(ck.key, v, err)
				delete(env, ck.key)
			}
		}
	}
	for _, k := range sortedKeys(env) {
		if isPortNameKey(k) {
			if err := records.CheckService(env[k]); err != nil {
				bad(k, env[k], err)
				delete(env, k)
			}
		}
	}
	if v, ok := env["SERVICE_TAGS"]; ok {
		var tags []string
		for _, t := range splitList(v) {
			switch err := records.CheckTag(t); {
			case err != nil:
				bad("SERVICE_TAGS", t, err)
			case len(tags) == records.MaxTags:
				bad("SERVICE_TAGS", t, fmt.Errorf("more than %d tags", records.MaxTags))
			default:
				tags = append(tags, t)
			}
		}
		if len(tags) != len(splitList(v)) {
			env["SERVICE_TAGS"] = strings.Join(tags, ",")
		}
	}
	labels := maps.Clone(c.Labels)
	// The weight: label berth.weight, else SERVICE_WEIGHT.
	for _, src := range []struct {
		field, v string
		ok       bool
		drop     func()
	}{
		{"label " + labelWeight, labels[labelWeight], hasKey(labels, labelWeight), func() { delete(labels, labelWeight) }},
		{"SERVICE_WEIGHT", env["SERVICE_WEIGHT"], hasKey(env, "SERVICE_WEIGHT"), func() { delete(env, "SERVICE_WEIGHT") }},
	} {
		if !src.ok {
			continue
		}
		w, err := records.CheckWeight(src.v)
		if err != nil {
			bad(src.field, src.v, err)
			src.drop()
			continue
		}
		m.weight = w
		break
	}
	if c.Name != "" {
		if err := records.CheckContainerName(c.Name); err != nil {
			bad("name", c.Name, err)
			m.c.Name = ""
		}
	}
	if c.Image != "" {
		if err := records.CheckImage(c.Image); err != nil {
			bad("image", c.Image, err)
			m.c.Image = ""
		}
	}
	if c.IP != "" {
		if err := records.CheckIP(c.IP); err != nil {
			bad("ip", c.IP, err)
			m.c.IP = ""
		}
	}
	// The service name, in order: label berth.service, env SERVICE_NAME,
	// label com.docker.compose.service, the image's repository base name.
	m.service = "unnamed"
	for _, src := range []struct {
		field, v string
		drop     func()
	}{
		{"label " + labelService, labels[labelService], func() { delete(labels, labelService) }},
		{"SERVICE_NAME", env["SERVICE_NAME"], func() { delete(env, "SERVICE_NAME") }},
		{"label " + labelCompose, labels[labelCompose], func() { delete(labels, labelCompose) }},
		{"image (its base name)", imageBase(m.c.Image), func() {}},
	} {
		if src.v == "" {
			continue
		}
		if err := records.CheckService(src.v); err != nil {
			bad(src.field, src.v, err)
			src.drop()
			continue
		}
		m.service = src.v
		break
	}
	if len(m.invalid) > 0 {
		m.env = env
		m.c.Env = rebuildEnv(c.Env, env)
		if c.Labels != nil {
			m.c.Labels = labels
		}
	}
	return m
}

// imageBase is the base name of an image's repository ("" for none).
func imageBase(image string) string {
	if image == "" {
		return ""
	}
	repo := records.ParseImage(image).Repository
	if i := strings.IndexByte(repo, '@'); i >= 0 {
		repo = repo[:i]
	}
	return path.Base(repo)
}

// isPortNameKey reports whether k is SERVICE_<port>_NAME.
func isPortNameKey(k string) bool {
	n, ok := strings.CutPrefix(k, "SERVICE_")
	if n, ok = strings.CutSuffix(n, "_NAME"); !ok || n == "" {
		return false
	}
	_, err := strconv.ParseUint(n, 10, 16)
	return err == nil
}

// rebuildEnv is the NAME=value list orig with the values of env: entries
// env lacks are left out, changed values replaced, order kept.
func rebuildEnv(orig []string, env map[string]string) []string {
	out := make([]string, 0, len(orig))
	for _, kv := range orig {
		k, _, ok := strings.Cut(kv, "=")
		if !ok {
			out = append(out, kv)
			continue
		}
		if v, keep := env[k]; keep {
			out = append(out, k+"="+v)
		}
	}
	return out
}

func hasKey[V any](m map[string]V, k string) bool {
	_, ok := m[k]
	return ok
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

// mainPort is the port a proxy should use: VIRTUAL_PORT (clean has
// checked it), otherwise the only exposed port. With several exposed ports
// or none, a virtual host gets 80 (nginx-proxy's rule); a plain service
// its lowest exposed port, or 0.
func mainPort(c runtime.Container, env map[string]string) int {
	if v, ok := env["VIRTUAL_PORT"]; ok {
		if p, err := records.CheckPort(v); err == nil {
			return p
		}
	}
	if len(c.Ports) != 1 && strings.TrimSpace(env["VIRTUAL_HOST"]) != "" {
		return 80
	}
	ports := slices.Clone(c.Ports)
	slices.SortFunc(ports, func(a, b runtime.Port) int { return cmp.Compare(a.Port, b.Port) })
	if len(ports) > 0 {
		return int(ports[0].Port)
	}
	return 0
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

// reachableAt is the address of container port port of c as other hosts
// reach it: advertise and the host port when the port is published on
// advertise or on every address, else ip and port unchanged.
func reachableAt(advertise string, c runtime.Container, ip string, port int) (string, int) {
	if advertise == "" || port == 0 {
		return ip, port
	}
	for _, p := range c.Ports {
		if int(p.Port) != port || p.HostPort == 0 || p.Proto == "udp" {
			continue
		}
		switch p.HostIP {
		case "", "0.0.0.0", "::", advertise:
			return advertise, int(p.HostPort)
		}
	}
	return ip, port
}
