package records

import (
	"strconv"
	"strings"

	"github.com/berthd/berth/runtime"
)

// FromRuntime is the container record (docker-gen's RuntimeContainer view)
// of a runtime container: what the registrar stores under ContainerKey and
// what berth docker-gen renders.
func FromRuntime(c runtime.Container) Container {
	rc := Container{
		ID: c.ID, Created: c.Created, Name: c.Name, Hostname: c.Hostname, NetworkMode: c.NetworkMode,
		Image: ParseImage(c.Image), Env: EnvMap(c.Env), Labels: c.Labels, IP: c.IP,
		State: ContainerState{Running: c.Running()},
	}
	if c.Health != runtime.HealthNone && c.Health != "" {
		rc.State.Health.Status = string(c.Health)
	}
	for _, n := range c.Networks {
		rc.Networks = append(rc.Networks, Network{
			Name: n.Name, IP: n.IP, Gateway: n.Gateway, MacAddress: n.MAC, IPPrefixLen: n.PrefixLen,
			Aliases: n.Aliases, EndpointID: n.EndpointID, GlobalIPv6Address: n.IPv6,
			GlobalIPv6PrefixLen: n.IPv6Prefix, IPv6Gateway: n.IPv6Gateway, Internal: n.Internal,
		})
		if rc.Gateway == "" {
			rc.Gateway = n.Gateway
		}
		if rc.IP6Global == "" {
			rc.IP6Global = n.IPv6
		}
	}
	for _, p := range c.Ports {
		a := Address{IP: c.IP, IP6Global: rc.IP6Global, Port: strconv.Itoa(int(p.Port)), Proto: p.Proto, HostIP: p.HostIP}
		if p.HostPort != 0 {
			a.HostPort = strconv.Itoa(int(p.HostPort))
		}
		rc.Addresses = append(rc.Addresses, a)
	}
	for _, m := range c.Mounts {
		rc.Mounts = append(rc.Mounts, Mount{Source: m.Source, Destination: m.Destination, RW: !m.ReadOnly})
	}
	return rc
}

// EnvMap turns NAME=value entries into a map; an entry without "=" (Docker
// allows "NAME" alone: unset in the container) is left out.
func EnvMap(env []string) map[string]string {
	m := make(map[string]string, len(env))
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}
