package docker

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/berthd/berth/runtime"
)

// fromInspect converts Docker's view of one container into berth's.
func fromInspect(in container.InspectResponse) runtime.Container {
	c := runtime.Container{
		ID:         in.ID,
		Name:       strings.TrimPrefix(in.Name, "/"),
		ImageID:    in.Image,
		Cmd:        append([]string{in.Path}, in.Args...),
		Labels:     map[string]string{},
		Env:        []string{},
		Networks:   []runtime.Network{},
		Ports:      []runtime.Port{},
		Mounts:     []runtime.Mount{},
		State:      runtime.StateCreated,
		Health:     runtime.HealthNone,
		Restart:    runtime.RestartPolicy{Name: "no"},
		RestartCnt: in.RestartCount,
		Created:    parseTime(in.Created),
	}
	if cfg := in.Config; cfg != nil {
		c.Image = cfg.Image
		c.Hostname = cfg.Hostname
		c.Env = slices.Clone(cfg.Env)
		c.WorkingDir = cfg.WorkingDir
		c.User = cfg.User
		if cfg.Labels != nil {
			c.Labels = cfg.Labels
		}
		for p := range cfg.ExposedPorts {
			c.Ports = append(c.Ports, runtime.Port{Port: p.Num(), Proto: string(p.Proto())})
		}
	}
	if st := in.State; st != nil {
		c.State = runtime.State(st.Status)
		c.Pid = st.Pid
		c.ExitCode = st.ExitCode
		c.OOMKilled = st.OOMKilled
		c.Error = st.Error
		c.Started = parseTime(st.StartedAt)
		c.Finished = parseTime(st.FinishedAt)
		if st.Health != nil && st.Health.Status != "" {
			c.Health = runtime.Health(st.Health.Status)
		}
	}
	if hc := in.HostConfig; hc != nil {
		c.NetworkMode = string(hc.NetworkMode)
		c.Restart = runtime.RestartPolicy{Name: cmp.Or(string(hc.RestartPolicy.Name), "no"), MaxRetries: hc.RestartPolicy.MaximumRetryCount}
	}
	for _, m := range in.Mounts {
		c.Mounts = append(c.Mounts, runtime.Mount{Source: m.Source, Destination: m.Destination, ReadOnly: !m.RW})
	}
	if ns := in.NetworkSettings; ns != nil {
		for name, ep := range ns.Networks {
			if ep == nil {
				continue
			}
			n := runtime.Network{
				Name: name, PrefixLen: ep.IPPrefixLen, MAC: ep.MacAddress.String(),
				Aliases: slices.Clone(ep.Aliases), EndpointID: ep.EndpointID,
				IP: addr(ep.IPAddress), Gateway: addr(ep.Gateway),
				IPv6: addr(ep.GlobalIPv6Address), IPv6Prefix: ep.GlobalIPv6PrefixLen, IPv6Gateway: addr(ep.IPv6Gateway),
			}
			c.Networks = append(c.Networks, n)
		}
		// Published ports: each binding of an exposed port.
		for p, bindings := range ns.Ports {
			for _, b := range bindings {
				hostPort, _ := strconv.ParseUint(b.HostPort, 10, 16)
				hp := runtime.Port{Port: p.Num(), Proto: string(p.Proto()), HostPort: uint16(hostPort)}
				if b.HostIP.IsValid() {
					hp.HostIP = b.HostIP.String()
				}
				c.Ports = publish(c.Ports, hp)
			}
		}
	}
	slices.SortFunc(c.Networks, func(a, b runtime.Network) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(c.Ports, func(a, b runtime.Port) int {
		return cmp.Or(cmp.Compare(a.Port, b.Port), strings.Compare(a.Proto, b.Proto), cmp.Compare(a.HostPort, b.HostPort), strings.Compare(a.HostIP, b.HostIP))
	})
	for _, n := range c.Networks {
		if n.IP != "" {
			c.IP = n.IP
			break
		}
	}
	return c
}

// publish records a host binding of a port: it fills the exposed entry's
// first binding, and adds an entry for each further one.
func publish(ports []runtime.Port, b runtime.Port) []runtime.Port {
	for i, p := range ports {
		if p.Port == b.Port && p.Proto == b.Proto && p.HostPort == 0 {
			ports[i] = b
			return ports
		}
	}
	return append(ports, b)
}

// parseTime reads Docker's RFC 3339 timestamps; Docker's zero time
// ("0001-01-01T00:00:00Z") and unparsable ones are the zero time.
func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() <= 1 {
		return time.Time{}
	}
	return t
}

// addr is an address as text, "" when unset.
func addr(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
