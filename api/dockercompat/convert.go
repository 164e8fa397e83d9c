package dockercompat

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	units "github.com/docker/go-units"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/storage"

	"github.com/berthd/berth/runtime"
)

// zeroTime is how dockerd writes a time that never happened; clients parse
// every timestamp, so none is ever empty.
const zeroTime = "0001-01-01T00:00:00Z"

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return zeroTime
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// stableID derives a 64-hex id from parts (networks and endpoints have no
// id of their own in berth).
func stableID(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:])
}

// addr parses an IP for the wire types; "" or garbage gives the zero
// Addr, which marshals as "" (never "invalid IP").
func addr(s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return a
}

func mac(s string) network.HardwareAddr {
	hw, err := net.ParseMAC(s)
	if err != nil {
		return nil
	}
	return network.HardwareAddr(hw)
}

func port(p runtime.Port) network.Port {
	np, _ := network.PortFrom(p.Port, network.IPProtocol(p.Proto))
	return np
}

// imageConfig is the part of an image's config inspect merges in.
type imageConfig struct {
	Entrypoint, Cmd []string
}

// endpoint is the EndpointSettings of one network of c.
func endpoint(c runtime.Container, n runtime.Network) *network.EndpointSettings {
	epID := n.EndpointID
	if epID == "" {
		epID = stableID("endpoint", c.ID, n.Name)
	}
	return &network.EndpointSettings{
		Aliases:             slices.Clone(n.Aliases),
		NetworkID:           networkID(n.Name),
		EndpointID:          epID,
		Gateway:             addr(n.Gateway),
		IPAddress:           addr(n.IP),
		IPPrefixLen:         n.PrefixLen,
		IPv6Gateway:         addr(n.IPv6Gateway),
		GlobalIPv6Address:   addr(n.IPv6),
		GlobalIPv6PrefixLen: n.IPv6Prefix,
		MacAddress:          mac(n.MAC),
		DNSNames:            []string{c.Name, c.ID[:12]},
	}
}

func networksOf(c runtime.Container) map[string]*network.EndpointSettings {
	out := map[string]*network.EndpointSettings{}
	for _, n := range c.Networks {
		out[n.Name] = endpoint(c, n)
	}
	if len(c.Networks) == 0 && (c.NetworkMode == runtime.NetworkHost || c.NetworkMode == runtime.NetworkNone) {
		out[c.NetworkMode] = &network.EndpointSettings{NetworkID: networkID(c.NetworkMode), EndpointID: stableID("endpoint", c.ID, c.NetworkMode)}
	}
	return out
}

// portMap is NetworkSettings.Ports: every exposed port, with its host
// binding when published and null when not (docker-gen reads the keys).
func portMap(c runtime.Container) network.PortMap {
	pm := network.PortMap{}
	for _, p := range c.Ports {
		k := port(p)
		if p.HostPort == 0 {
			if _, ok := pm[k]; !ok {
				pm[k] = nil
			}
			continue
		}
		pm[k] = append(pm[k], network.PortBinding{HostIP: hostIP(p), HostPort: strconv.Itoa(int(p.HostPort))})
	}
	return pm
}

func hostIP(p runtime.Port) netip.Addr {
	if a := addr(p.HostIP); a.IsValid() {
		return a
	}
	return netip.IPv4Unspecified()
}

func portSummaries(c runtime.Container) []container.PortSummary {
	out := []container.PortSummary{}
	for _, p := range c.Ports {
		ps := container.PortSummary{PrivatePort: p.Port, Type: p.Proto}
		if p.HostPort != 0 {
			ps.IP, ps.PublicPort = hostIP(p), p.HostPort
		}
		out = append(out, ps)
	}
	return out
}

func mountPoints(c runtime.Container) []container.MountPoint {
	out := []container.MountPoint{}
	for _, m := range c.Mounts {
		mode := ""
		if m.ReadOnly {
			mode = "ro"
		}
		out = append(out, container.MountPoint{
			Type: mount.TypeBind, Source: m.Source, Destination: m.Destination,
			Mode: mode, RW: !m.ReadOnly, Propagation: mount.PropagationRPrivate,
		})
	}
	return out
}

// status is the STATUS column of docker ps.
func status(c runtime.Container, now time.Time) string {
	switch c.State {
	case runtime.StateRunning:
		s := "Up " + units.HumanDuration(now.Sub(c.Started))
		switch c.Health {
		case runtime.HealthStarting:
			s += " (health: starting)"
		case runtime.HealthHealthy, runtime.HealthUnhealthy:
			s += " (" + string(c.Health) + ")"
		}
		return s
	case runtime.StateRestarting:
		return fmt.Sprintf("Restarting (%d) %s ago", c.ExitCode, units.HumanDuration(now.Sub(c.Finished)))
	case runtime.StateExited:
		if c.Finished.IsZero() {
			return fmt.Sprintf("Exited (%d)", c.ExitCode)
		}
		return fmt.Sprintf("Exited (%d) %s ago", c.ExitCode, units.HumanDuration(now.Sub(c.Finished)))
	case runtime.StateCreated:
		return "Created"
	case runtime.StateRemoving:
		return "Removal In Progress"
	case runtime.StateDead:
		return "Dead"
	}
	return string(c.State)
}

// command is the COMMAND column: the argv joined, as dockerd does.
func command(c runtime.Container) string { return strings.Join(c.Cmd, " ") }

func summary(c runtime.Container, now time.Time) container.Summary {
	s := container.Summary{
		ID: c.ID, Names: []string{"/" + c.Name}, Image: c.Image, ImageID: c.ImageID,
		Command: command(c), Created: c.Created.Unix(), Ports: portSummaries(c),
		Labels: c.Labels, State: container.ContainerState(c.State), Status: status(c, now),
		NetworkSettings: &container.NetworkSettingsSummary{Networks: networksOf(c)},
		Mounts:          mountPoints(c),
	}
	if s.Labels == nil {
		s.Labels = map[string]string{}
	}
	s.HostConfig.NetworkMode = c.NetworkMode
	if c.Health != runtime.HealthNone && c.Health != "" {
		s.Health = &container.HealthSummary{Status: container.HealthStatus(c.Health)}
	}
	return s
}

func healthConfig(h *runtime.HealthCheck) *container.HealthConfig {
	if h == nil {
		return nil
	}
	return &container.HealthConfig{
		Test: append([]string{"CMD"}, h.Cmd...), Interval: h.Interval, Timeout: h.Timeout,
		Retries: h.Retries, StartPeriod: h.StartPeriod,
	}
}

// inspect builds dockerd's inspect answer for c, created from spec, whose
// image had img as Entrypoint and Cmd.
func inspect(c runtime.Container, spec runtime.Spec, img imageConfig, autoRemove bool) container.InspectResponse {
	path, args := "", []string{}
	if len(c.Cmd) > 0 {
		path, args = c.Cmd[0], slices.Clone(c.Cmd[1:])
	}
	st := &container.State{
		Status: container.ContainerState(c.State), Running: c.State == runtime.StateRunning,
		Restarting: c.State == runtime.StateRestarting, OOMKilled: c.OOMKilled,
		Dead: c.State == runtime.StateDead, Pid: c.Pid, ExitCode: c.ExitCode, Error: c.Error,
		StartedAt: rfc3339(c.Started), FinishedAt: rfc3339(c.Finished),
	}
	if spec.Health != nil {
		st.Health = &container.Health{Status: container.HealthStatus(c.Health), Log: []*container.HealthcheckResult{}}
	}
	entry, cmd := spec.Command(img.Entrypoint, img.Cmd)
	exposed := network.PortSet{}
	for _, p := range c.Ports {
		exposed[port(p)] = struct{}{}
	}
	env := c.Env
	if env == nil {
		env = []string{}
	}
	labels := c.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	cfg := &container.Config{
		Hostname: c.Hostname, User: c.User, ExposedPorts: exposed, Env: env,
		Cmd: cmd, Entrypoint: entry, Image: c.Image, WorkingDir: c.WorkingDir,
		Labels: labels, StopSignal: spec.StopSignal, Healthcheck: healthConfig(spec.Health),
		AttachStdout: true, AttachStderr: true,
	}
	hc := &container.HostConfig{
		NetworkMode:    container.NetworkMode(c.NetworkMode),
		PortBindings:   network.PortMap{},
		RestartPolicy:  container.RestartPolicy{Name: container.RestartPolicyMode(c.Restart.Name), MaximumRetryCount: c.Restart.MaxRetries},
		AutoRemove:     autoRemove,
		LogConfig:      container.LogConfig{Type: "json-file", Config: map[string]string{}},
		ReadonlyRootfs: spec.ReadOnly,
	}
	hc.Memory = spec.Memory
	hc.NanoCPUs = int64(spec.CPUs * 1e9)
	if spec.PidsLimit > 0 {
		pl := spec.PidsLimit
		hc.PidsLimit = &pl
	}
	for _, p := range c.Ports {
		if p.HostPort != 0 {
			k := port(p)
			hc.PortBindings[k] = append(hc.PortBindings[k], network.PortBinding{HostIP: addr(p.HostIP), HostPort: strconv.Itoa(int(p.HostPort))})
		}
	}
	for _, m := range c.Mounts {
		b := m.Source + ":" + m.Destination
		if m.ReadOnly {
			b += ":ro"
		}
		hc.Binds = append(hc.Binds, b)
	}
	ns := &container.NetworkSettings{Ports: portMap(c), Networks: networksOf(c)}
	return container.InspectResponse{
		ID: c.ID, Created: rfc3339(c.Created), Path: path, Args: args, State: st,
		Image: c.ImageID, Name: "/" + c.Name, RestartCount: c.RestartCnt,
		Driver: "overlay", Platform: "linux", ExecIDs: nil, HostConfig: hc,
		GraphDriver: &storage.DriverData{Name: "overlay", Data: map[string]string{}},
		Mounts:      mountPoints(c), Config: cfg, NetworkSettings: ns,
	}
}

// legacyInspect is inspect for API versions below 1.52, which still have
// the top-level NetworkSettings fields of the default bridge network
// (docker-gen's .IP, .Gateway and .Addresses[].IP read them).
type legacyInspect struct {
	container.InspectResponse
	NetworkSettings *legacyNetworkSettings
}

type legacyNetworkSettings struct {
	Bridge                 string
	SandboxID              string
	SandboxKey             string
	HairpinMode            bool
	LinkLocalIPv6Address   string
	LinkLocalIPv6PrefixLen int
	Ports                  network.PortMap
	SecondaryIPAddresses   []string
	SecondaryIPv6Addresses []string
	EndpointID             string
	Gateway                string
	GlobalIPv6Address      string
	GlobalIPv6PrefixLen    int
	IPAddress              string
	IPPrefixLen            int
	IPv6Gateway            string
	MacAddress             string
	Networks               map[string]*network.EndpointSettings
}

func withLegacy(in container.InspectResponse) legacyInspect {
	ns := in.NetworkSettings
	l := &legacyNetworkSettings{SandboxID: ns.SandboxID, SandboxKey: ns.SandboxKey, Ports: ns.Ports, Networks: ns.Networks}
	if ep := ns.Networks[runtime.NetworkBridge]; ep != nil {
		l.EndpointID = ep.EndpointID
		l.Gateway = addrString(ep.Gateway)
		l.IPAddress = addrString(ep.IPAddress)
		l.IPPrefixLen = ep.IPPrefixLen
		l.IPv6Gateway = addrString(ep.IPv6Gateway)
		l.GlobalIPv6Address = addrString(ep.GlobalIPv6Address)
		l.GlobalIPv6PrefixLen = ep.GlobalIPv6PrefixLen
		l.MacAddress = ep.MacAddress.String()
	}
	return legacyInspect{InspectResponse: in, NetworkSettings: l}
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
