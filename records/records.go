package records

import (
	"maps"
	"slices"
	"strconv"
	"time"
)

// Health is the health of an instance as its container reports it.
type Health string

// Health values. HealthNone means the container has no health check.
const (
	HealthHealthy   Health = "healthy"
	HealthStarting  Health = "starting"
	HealthUnhealthy Health = "unhealthy"
	HealthNone      Health = "none"
)

// State is whether an instance takes new traffic.
type State string

// State values. A draining instance still serves its open connections but
// should receive no new ones (weight 0, or "down" in a proxy config).
const (
	StateRunning  State = "running"
	StateDraining State = "draining"
)

// Port is one port of an instance.
type Port struct {
	Port     int    `json:"port"`                // the container port
	Proto    string `json:"proto"`               // "tcp" or "udp"
	HostPort int    `json:"host_port,omitempty"` // the published host port, 0 if not published
	Name     string `json:"name,omitempty"`      // SERVICE_<port>_NAME, if set
}

// Instance is the record of one service instance (one container serving
// one service), stored as JSON under ServiceKey.
type Instance struct {
	ID        string            `json:"id"`   // container id
	Name      string            `json:"name"` // container name, without the leading "/"
	Service   string            `json:"service"`
	Host      string            `json:"host"`
	IP        string            `json:"ip"`
	Port      int               `json:"port"` // the main port (first of Ports), 0 if none
	Ports     []Port            `json:"ports,omitempty"`
	Image     string            `json:"image"`
	Labels    map[string]string `json:"labels,omitempty"`
	Env       map[string]string `json:"env,omitempty"` // declared keys only: VIRTUAL_*, SERVICE_*, LETSENCRYPT_*
	Tags      []string          `json:"tags,omitempty"`
	Health    Health            `json:"health"`
	State     State             `json:"state"`
	Weight    int               `json:"weight"`
	StartedAt time.Time         `json:"started_at"`
	// Invalid lists the container's metadata the registrar left out of
	// the records (a VIRTUAL_HOST entry with a ";", a service name with a
	// "/"), and why; the rest of the container is registered as usual.
	Invalid []FieldError `json:"invalid,omitempty"`
}

// Address returns "ip:port" of the main port ("" when the instance has no
// IP or no port). IPv6 addresses are bracketed.
func (i Instance) Address() string {
	if i.IP == "" || i.Port == 0 {
		return ""
	}
	ip := i.IP
	for _, c := range ip {
		if c == ':' {
			ip = "[" + ip + "]"
			break
		}
	}
	return ip + ":" + strconv.Itoa(i.Port)
}

// Host is the record of one host running a berth registrar, stored as JSON
// under HostKey. Every key the host registers is bound to LeaseID, so the
// host's records disappear together when it stops renewing the lease.
type Host struct {
	Name      string    `json:"name"`
	LeaseID   int64     `json:"lease_id,omitempty"`
	Version   string    `json:"version,omitempty"` // berth version of the registrar
	StartedAt time.Time `json:"started_at"`
}

// Copy returns a copy of i that shares no map or slice with it.
func (i Instance) Copy() Instance {
	i.Ports = slices.Clone(i.Ports)
	i.Labels = maps.Clone(i.Labels)
	i.Env = maps.Clone(i.Env)
	i.Tags = slices.Clone(i.Tags)
	i.Invalid = slices.Clone(i.Invalid)
	return i
}
