package records

import "time"

// Container is the record of one container: exactly the fields of
// docker-gen's RuntimeContainer, with the same Go names and no JSON tags, so
// that docker-gen templates and docker-gen context fixtures work unchanged.
// It is stored as JSON under ContainerKey.
type Container struct {
	ID           string
	Created      time.Time
	Addresses    []Address // sorted by port (numeric), proto, host port, host IP, IP
	Networks     []Network // sorted by name
	Devices      []Device
	Gateway      string
	Name         string
	Hostname     string
	NetworkMode  string
	Image        DockerImage
	Env          map[string]string
	Volumes      map[string]Volume
	Node         SwarmNode
	Labels       map[string]string
	IP           string // the legacy default-bridge address
	IP6LinkLocal string
	IP6Global    string
	Mounts       []Mount
	State        ContainerState
}

// PublishedAddresses returns the addresses that have a host port, as
// docker-gen's RuntimeContainer.PublishedAddresses does.
func (c *Container) PublishedAddresses() []Address {
	out := []Address{}
	for _, a := range c.Addresses {
		if a.HostPort != "" {
			out = append(out, a)
		}
	}
	return out
}

// Address is one exposed port of a container.
type Address struct {
	IP           string
	IP6LinkLocal string
	IP6Global    string
	Port         string
	HostPort     string
	Proto        string
	HostIP       string
}

// Network is one network a container is attached to.
type Network struct {
	IP                  string
	Name                string
	Aliases             []string
	Gateway             string
	EndpointID          string
	IPv6Gateway         string
	GlobalIPv6Address   string
	MacAddress          string
	GlobalIPv6PrefixLen int
	IPPrefixLen         int
	Internal            bool
}

// Device is one device mapped into a container.
type Device struct {
	PathOnHost      string
	PathInContainer string
	Permissions     string
}

// Volume is one volume of a container.
type Volume struct {
	Path      string
	HostPath  string
	ReadWrite bool
}

// Mount is one mount of a container.
type Mount struct {
	Name        string
	Source      string
	Destination string
	Driver      string
	Mode        string
	RW          bool
}

// DockerImage is an image reference split into its parts.
type DockerImage struct {
	Registry   string
	Repository string
	Tag        string
}

// String joins the parts back: [registry/]repository[:tag].
func (i DockerImage) String() string {
	s := i.Repository
	if i.Registry != "" {
		s = i.Registry + "/" + s
	}
	if i.Tag != "" {
		s += ":" + i.Tag
	}
	return s
}

// SwarmNode is the classic-Swarm node a container runs on.
type SwarmNode struct {
	ID      string
	Name    string
	Address Address
}

// ContainerState is a container's state as docker-gen exposes it
// (.State.Running, .State.Health.Status).
type ContainerState struct {
	Running bool
	Health  ContainerHealth
}

// ContainerHealth is a container's health-check status ("healthy",
// "starting", "unhealthy", or "" without a health check).
type ContainerHealth struct {
	Status string
}

// Docker is the summary of the container engine that docker-gen exposes as
// $.Docker.
type Docker struct {
	Name               string
	NumContainers      int
	NumImages          int
	Version            string
	ApiVersion         string //nolint:revive // docker-gen's field name
	GoVersion          string
	OperatingSystem    string
	Architecture       string
	CurrentContainerID string
}
